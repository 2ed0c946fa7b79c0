"""Triton Python-backend model: the source ``rtdetr-export triton`` copies to ``REPO/NAME/1/model.py``.

One file for the three roles a repository can need, chosen by the config's ``rtdetr_export.role`` parameter:

- ``model``: serves ``model.onnx`` beside it with ONNX Runtime or OpenVINO (``rtdetr_export.runtime``), through
  the very runners of ``rtdetr_export.backends`` that verify, bench and predict use (not a copy of them: a copy
  drifted once, naming OpenVINO's outputs after folded FP16 casts). Dynamic batching hands ``execute`` several
  requests; they run as one batch and the outputs are split back. The runners import neither torch nor onnx
  here: OpenVINO gets the config's input and output names instead of reading them from the graph.
- ``preprocess`` (ensemble): encoded image bytes -> ``images`` and ``orig_target_sizes``, through
  ``rtdetr_export.imaging`` itself, so a served ensemble resizes and scales exactly as ``predict`` does.
- ``postprocess`` (ensemble over a raw head): logits and boxes -> the detections head's labels, boxes, scores,
  through ``rtdetr_export.imaging.postprocess``.
- A split artifact (serving/split.py): ``encoder`` and ``decoder`` serve its graphs as ``model`` serves a file;
  ``select`` is the host step between them and ``detections`` the detections head's top-k after graph 2, both
  ``rtdetr_export.imaging.host_step`` itself, the code the local split runner runs (not a copy).

A request that cannot be served (undecodable bytes) gets its own error response; the others in the batch are
answered. The Python backend's stub needs numpy < 2 (docs/serving.md).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

PREFIX = "rtdetr_export."
GRAPH_ROLES = ("model", "encoder", "decoder")  # serve model.onnx beside this file


def _parameter(config, key, default=None):
    """A ``rtdetr_export.<key>`` parameter (JSON, as the generator writes them)."""
    entry = config.get("parameters", {}).get(PREFIX + key)
    return default if entry is None else json.loads(entry["string_value"])


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        self.role = _parameter(self.config, "role", "model")
        self.batching = int(self.config.get("max_batch_size", 0)) > 0
        self.output_types = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"])
                             for o in self.config["output"]}
        if self.role in GRAPH_ROLES:
            path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
            runtime = _parameter(self.config, "runtime", "onnxruntime")
            threads = _parameter(self.config, "threads")
            self.inputs = [i["name"] for i in self.config["input"]]
            self.runner = self._runner(runtime, path, threads, [o["name"] for o in self.config["output"]])
            self.runner.activate()
            self.run = self.runner.infer
        elif self.role == "preprocess":
            from rtdetr_export.imaging import decode_image, preprocess

            self.decode, self.preprocess = decode_image, preprocess
            self.size = tuple(_parameter(self.config, "input_size"))
        elif self.role == "postprocess":
            from rtdetr_export.imaging import postprocess

            self.postprocess = postprocess
        elif self.role == "select":
            from rtdetr_export.imaging.host_step import query_rows, select_cells

            self.query_rows, self.select_cells = query_rows, select_cells
            self.num_queries = int(_parameter(self.config, "num_queries"))
        elif self.role == "detections":
            from rtdetr_export.imaging.host_step import top_detections

            self.top_detections = top_detections
            self.top_k = int(_parameter(self.config, "top_k"))
        else:
            raise pb_utils.TritonModelException(f"unknown rtdetr_export.role {self.role!r}")

    def _runner(self, runtime, path, threads, outputs):
        if runtime == "onnxruntime":
            from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner

            return OnnxRuntimeRunner(path, threads=threads)
        if runtime == "openvino":
            from rtdetr_export.backends.openvino_runner import OpenVinoRunner

            return OpenVinoRunner(path, "f32", threads, io_names=(self.inputs, outputs))
        raise pb_utils.TritonModelException(f"unknown rtdetr_export.runtime {runtime!r}")

    def finalize(self):
        if self.role in GRAPH_ROLES:
            self.runner.deactivate()

    def _response(self, outputs):
        """Every output the config declares, or an error naming the missing ones: a runner that returns other
        names is a bug to report, not outputs to drop."""
        missing = [name for name in self.output_types if name not in outputs]
        if missing:
            return self._error(f"{self.config['name']}: the runtime returned no {', '.join(missing)} (it returned "
                               f"{', '.join(outputs) or 'nothing'})")
        return pb_utils.InferenceResponse([pb_utils.Tensor(name, np.ascontiguousarray(outputs[name].astype(dtype)))
                                           for name, dtype in self.output_types.items()])

    @staticmethod
    def _error(message):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    def execute(self, requests):
        if self.role in GRAPH_ROLES:
            return self._execute_model(requests)
        responses = []
        for request in requests:  # per request, so that one bad image fails only its own request
            try:
                responses.append(self._response(self._step(request)))
            except Exception as exc:  # the client gets the message; the server keeps serving
                responses.append(self._error(f"{self.config['name']}: {exc}"))
        return responses

    def _execute_model(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
                 for r in requests]
        try:
            if not self.batching:
                return [self._response(self.run(feed)) for feed in feeds]
            counts = [len(feed[self.inputs[0]]) for feed in feeds]
            outputs = self.run({name: np.concatenate([f[name] for f in feeds]) for name in self.inputs})
        except Exception as exc:
            return [self._error(f"{self.config['name']}: inference failed: {exc}") for _ in requests]
        bounds = np.cumsum([0] + counts)
        return [self._response({k: v[bounds[i]:bounds[i + 1]] for k, v in outputs.items()})
                for i in range(len(requests))]

    def _step(self, request):
        if self.role in ("select", "detections"):
            return self._host_step(request)
        if self.role == "preprocess":
            encoded = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
            pictures = [self.decode(bytes(data), f"image {i}") for i, data in enumerate(encoded)]
            images = np.concatenate([self.preprocess(p, self.size) for p in pictures])
            sizes = np.array([[p.width, p.height] for p in pictures], dtype=np.int64)  # (width, height): the contract
            return {"images": images, "orig_target_sizes": sizes}
        logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()
        boxes = pb_utils.get_input_tensor_by_name(request, "pred_boxes").as_numpy()
        sizes = pb_utils.get_input_tensor_by_name(request, "orig_target_sizes").as_numpy()
        # Every query, best first, no threshold: the detections head's contract (clients threshold the scores).
        found = self.postprocess(logits, boxes, [(int(h), int(w)) for w, h in sizes], threshold=-1.0,
                                 top_k=logits.shape[1])
        return {"labels": np.stack([d.labels for d in found]), "boxes": np.stack([d.boxes for d in found]),
                "scores": np.stack([d.scores for d in found])}

    def _host_step(self, request):
        tensors = {i["name"]: pb_utils.get_input_tensor_by_name(request, i["name"]).as_numpy()
                   for i in self.config["input"]}
        if self.role == "select":
            return self.query_rows(tensors, self.select_cells(tensors, self.num_queries))
        return self.top_detections(tensors["logits"], tensors["pred_boxes"], tensors["orig_target_sizes"], self.top_k)
