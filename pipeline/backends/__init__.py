from pipeline.backends.base import Generation, GenerationRequest, ModelBackend

__all__ = ["Generation", "GenerationRequest", "ModelBackend"]
