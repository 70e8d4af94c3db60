"""The trained model as an MLflow pyfunc: ``predict`` completes code prompts.

Logged with the HF export as its artifact, so ``mlflow.pyfunc.load_model(
"models:/starflow-coder@challenger")`` gives a working generator, and the HF
folder inside is loadable with ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import mlflow.pyfunc


SERVE_BATCH = 16
"""Prompts per generate() call when the registered model is served."""


class CodeCompletionModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.model_dir = context.artifacts["hf_model"]

    # No type hints on predict: MLflow would infer a signature from them and drop the
    # explicit one, whose params schema (max_new_tokens) callers need.
    def predict(self, context, model_input, params=None):
        from models.generate import Decoding, generate

        params = params or {}
        if hasattr(model_input, "columns"):  # MLflow hands a DataFrame to schema-checked models
            column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
            prompts = model_input[column].astype(str).tolist()
        else:
            prompts = [str(p) for p in model_input]
        sampling = Decoding(num_samples=1, temperature=float(params.get("temperature", 0.0)),
                            top_p=float(params.get("top_p", 0.95)), seed=0)
        outs = generate(self.model_dir, prompts, int(params.get("max_new_tokens", 64)), SERVE_BATCH, sampling)
        return [o[0] for o in outs]
