"""cursorgate.v1.ResponseStoreService: a license's stored Responses API objects, kept by core."""

from __future__ import annotations

import logging
import re
from typing import Any

import grpc
from sqlalchemy.exc import IntegrityError

from core.api.chat_service import INTERNAL_ERROR, metadata_value
from core.errors import Code, GatewayError, invalid
from core.licensing.licenses import License, LicenseRegistry
from core.licensing.secrets import bearer
from core.store.responses import ResponseRepo, StoredResponse
from cursorgate.v1 import responses_pb2, responses_pb2_grpc

log = logging.getLogger("cursorgate.responses")

Context = grpc.aio.ServicerContext[Any, Any]

# Ids are the facade's ("resp_" + hex), but any caller of core may store; keep them printable.
RESPONSE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def _not_found(response_id: str) -> GatewayError:
    return GatewayError(
        Code.ERROR_CODE_RESPONSE_NOT_FOUND, f"Response with id '{response_id[:100]}' not found."
    )


class ResponseStoreService(responses_pb2_grpc.ResponseStoreServiceServicer):
    def __init__(self, licenses: LicenseRegistry, repo: ResponseRepo) -> None:
        self.licenses = licenses
        self.repo = repo

    def _license(self, context: Context) -> License:
        return self.licenses.authenticate(bearer(metadata_value(context, "authorization")))

    @staticmethod
    def _check_id(response_id: str) -> None:
        if not RESPONSE_ID.match(response_id):
            raise invalid("A response id is 1-100 characters of a-z, A-Z, 0-9, '_' or '-'.", "id")

    async def _fail(self, context: Context, err: Exception) -> None:
        if not isinstance(err, GatewayError):
            log.exception("response store call failed unexpectedly", exc_info=err)
            err = INTERNAL_ERROR
        await context.abort_with_status(err.to_status())

    async def PutResponse(
        self, request: responses_pb2.PutResponseRequest, context: Context
    ) -> responses_pb2.PutResponseResponse:
        try:
            lic = self._license(context)
            given = request.response
            self._check_id(given.id)
            if given.previous_response_id:
                self._check_id(given.previous_response_id)
            try:
                stored = await self.repo.put(
                    StoredResponse(
                        id=given.id,
                        license_id=lic.id,
                        model=given.model[:200],
                        previous_response_id=given.previous_response_id,
                        response_json=given.response_json,
                        items_json=given.items_json,
                    )
                )
            except IntegrityError:  # the id is another license's
                raise invalid(f"The response id '{given.id}' is already in use.", "id") from None
            return responses_pb2.PutResponseResponse(expires_at=stored.expires_at)
        except Exception as err:
            await self._fail(context, err)
            raise  # unreachable: abort raises

    async def GetResponse(
        self, request: responses_pb2.GetResponseRequest, context: Context
    ) -> responses_pb2.StoredResponse:
        try:
            lic = self._license(context)
            self._check_id(request.id)
            found = await self.repo.get(lic.id, request.id)
            if found is None:
                raise _not_found(request.id)
            return responses_pb2.StoredResponse(
                id=found.id,
                model=found.model,
                response_json=found.response_json,
                items_json=found.items_json,
                previous_response_id=found.previous_response_id,
                created_at=found.created_at,
                expires_at=found.expires_at,
            )
        except Exception as err:
            await self._fail(context, err)
            raise

    async def DeleteResponse(
        self, request: responses_pb2.DeleteResponseRequest, context: Context
    ) -> responses_pb2.DeleteResponseResponse:
        try:
            lic = self._license(context)
            self._check_id(request.id)
            if not await self.repo.delete(lic.id, request.id):
                raise _not_found(request.id)
            return responses_pb2.DeleteResponseResponse(id=request.id, deleted=True)
        except Exception as err:
            await self._fail(context, err)
            raise
