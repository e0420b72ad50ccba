"""``/v1/admin``: collections, documents, stats and uploads that start ingestion jobs.

Routes that change documents depend on ``WriterDep`` (key scope ``write``), those that create or drop
collections on ``AdminDep`` (scope ``admin``); see :func:`api.deps._grant` for who may administer.
A key sees and changes only its own collections and their jobs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, UploadFile

from api.deps import AdminDep, AdminServiceDep, WriterDep
from api.schemas import (
    AdminCollectionCreate,
    AdminCollectionOut,
    AdminCollectionsResponse,
    AdminDeleteResponse,
    AdminDocumentsResponse,
    AdminDropResponse,
    AdminStatusResponse,
    ErrorResponse,
    JobOut,
    JobsResponse,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 422, 429, 503)}
"""The error responses every admin route documents (403: not an admin; 409: the collection is busy; 429: over the key's rate)."""


@router.get("", response_model=AdminStatusResponse, responses=ERRORS)
async def status(admin: WriterDep, service: AdminServiceDep) -> AdminStatusResponse:
    """Whether the caller may administer, and what an upload may hold."""
    return await service.status(admin.granted_by)


@router.get("/collections", response_model=AdminCollectionsResponse, responses=ERRORS)
async def collections(admin: WriterDep, service: AdminServiceDep) -> AdminCollectionsResponse:
    """Every collection the key may use, with its counts (documents by state, chunks, vectors, bytes on disk)."""
    found = await service.collections()
    return AdminCollectionsResponse(collections=[c for c in found.collections if admin.scope.visible([c.name])])


@router.post("/collections", response_model=AdminCollectionOut, status_code=201, responses=ERRORS)
async def create_collection(body: AdminCollectionCreate, admin: AdminDep, service: AdminServiceDep) -> AdminCollectionOut:
    """Create an empty collection (409 when it exists)."""
    admin.scope.check(body.name, "administer")
    return await service.create(body.name, body.redact)


@router.get("/collections/{name}", response_model=AdminCollectionOut, responses=ERRORS)
async def collection_stats(name: str, _: WriterDep, service: AdminServiceDep) -> AdminCollectionOut:
    """One collection's counts, as ``rag stats`` gives them."""
    return await service.stats(name)


@router.delete("/collections/{name}", response_model=AdminDropResponse, responses=ERRORS)
async def drop_collection(name: str, _: AdminDep, service: AdminServiceDep) -> AdminDropResponse:
    """Drop a collection with its documents, indexes and uploaded files."""
    return await service.drop(name)


@router.get("/collections/{name}/documents", response_model=AdminDocumentsResponse, responses=ERRORS)
async def documents(
    name: str, _: WriterDep, service: AdminServiceDep,
    all_states: Annotated[bool, Query(alias="all", description="every stored version, not only active ones")] = False,
) -> AdminDocumentsResponse:
    """The collection's documents with their state and chunk counts."""
    return await service.documents(name, all_states)


@router.delete("/collections/{name}/documents/{document_id}", response_model=AdminDeleteResponse, responses=ERRORS)
async def delete_document(
    name: str, document_id: Annotated[int, Path(ge=1, le=2**63 - 1)], _: WriterDep, service: AdminServiceDep
) -> AdminDeleteResponse:
    """Delete one active document (``rag delete --id``); ``rag compact`` later reclaims its space."""
    return await service.delete(name, document_id)


@router.post("/jobs", response_model=JobOut, status_code=202, responses=ERRORS)
async def upload(
    collection: Annotated[str, Form(min_length=1, max_length=100)],
    files: Annotated[list[UploadFile], File(description="the files to ingest")],
    admin: WriterDep,
    service: AdminServiceDep,
) -> JobOut:
    """Upload files into a collection and start ingesting them (``rag ingest`` over them) in the background.

    Poll ``GET /v1/admin/jobs/{id}`` for progress; files that cannot be ingested are listed with
    their reasons. 409 ``busy`` while another job writes to the collection.
    """
    admin.scope.check(collection, "administer")
    return await service.upload(collection, [(f.filename, f.file) for f in files])


@router.get("/jobs", response_model=JobsResponse, responses=ERRORS)
async def jobs(admin: WriterDep, service: AdminServiceDep) -> JobsResponse:
    """This server's recent ingestion jobs into the key's collections, newest first."""
    found = await service.all_jobs()
    return JobsResponse(jobs=[j for j in found.jobs if admin.scope.visible([j.collection])])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
async def job(job_id: str, admin: WriterDep, service: AdminServiceDep) -> JobOut:
    """One ingestion job's progress, counts and failed files (404 for a job outside the key's collections)."""
    found = await service.job(job_id)
    admin.scope.check_hidden(found.collection, f"no ingestion job {job_id!r} on this server", "job_id")
    return found
