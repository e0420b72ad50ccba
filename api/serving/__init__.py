"""The service layer between HTTP routes and ``rag/``: each class does one route family's work.

Routes only translate (request schema in, response schema out); these classes call the pipeline,
hold the generation-slot limiter, record metrics and build responses and event streams. The split
follows vLLM's router / ``OpenAIServing*`` classes.
"""

from api.serving.chat import ChatService
from api.serving.query import QueryService
from api.serving.status import StatusService

__all__ = ["ChatService", "QueryService", "StatusService"]
