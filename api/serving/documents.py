"""``GET /v1/collections/{name}/documents/{id}``: a cited document's whole text, for the page's source view."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from api.deps import Scope
from api.errors import ApiError
from api.schemas import DocumentSectionOut, DocumentTextOut
from rag.index.store import StoredChunk, Store


def stitch(chunks: list[StoredChunk]) -> str:
    """A document's text from its chunks, in order.

    Chunks cover the text end to end and may overlap (``char_start`` of one lies before
    ``char_end`` of the one before); each adds what lies past the text so far. A gap, which the
    chunker does not leave, is filled with spaces so that offsets still index the text.
    """
    text = ""
    for c in chunks:
        if c.char_start > len(text):
            text += " " * (c.char_start - len(text))
        if c.char_end > len(text):
            text += c.text[len(text) - c.char_start :]
    return text


class DocumentService:
    """The stored text of documents, for readers of their collection.

    Args:
        store: the database.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def text(self, collection: str, document_id: int, scope: Scope) -> DocumentTextOut:
        """The active document ``document_id`` of ``collection``, whole.

        Raises:
            ApiError: 403 outside the key's collections; 404 when the collection holds no active
                document with this id (a re-ingested document has a new id).
            NotFoundError: no such collection.
        """
        scope.check(collection)

        def load() -> DocumentTextOut:
            info = self.store.collection(collection)
            chunks = self.store.document_chunks(document_id)
            # hydrate() only returns chunks of active documents of this collection: the id alone is not enough.
            first = self.store.hydrate(info.id, [chunks[0].chunk_id]).get(chunks[0].chunk_id) if chunks else None
            if first is None:
                raise ApiError(
                    404, f"collection {collection!r} holds no active document {document_id}; it may have been re-ingested or deleted",
                    "not_found_error", "document_id", "not_found",
                )
            sections: list[DocumentSectionOut] = []
            for c in chunks:
                if c.section and (not sections or sections[-1].section != c.section):
                    sections.append(DocumentSectionOut(char_start=c.char_start, section=c.section))
            return DocumentTextOut(
                document_id=document_id, external_id=first.external_id, source=first.source, title=first.title,
                text=stitch(chunks), sections=sections,
            )

        return await run_in_threadpool(load)
