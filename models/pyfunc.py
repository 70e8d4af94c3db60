"""The trained model as an MLflow pyfunc: ``predict`` completes code prompts.

Logged with the HF export as its artifact, so ``mlflow.pyfunc.load_model(
"models:/starflow-coder@challenger")`` gives a working generator, and the HF
folder inside is loadable with ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import mlflow.pyfunc


class CodeCompletionModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.model_dir = context.artifacts["hf_model"]

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        from models.generate import generate

        params = params or {}
        prompts = list(model_input["prompt"]) if hasattr(model_input, "columns") else list(model_input)
        outs = generate(self.model_dir, prompts, max_new_tokens=int(params.get("max_new_tokens", 64)))
        return [o[0] for o in outs]
