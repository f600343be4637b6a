"""ApiVersions (key 18), versions 0-4.

Built from the handler registry: what is listed is exactly what is served. A request
at a version above 4 gets the v0 body with UNSUPPORTED_VERSION and the full list, so
that the client can retry with a version we know (KIP-511). The response header is
always v0 (see protocol/headers.py).

Not yet: supported/finalized features (KIP-584) are empty; Kafka 4 lists
metadata.version and kraft.version there, clients only read them for admin calls.
"""
from kafkette.broker.registry import HANDLERS, handler
from kafkette.errors import ErrorCode
from kafkette.protocol.messages import ApiVersionsResponse


def _api_keys():
    return [ApiVersionsResponse.ApiVersion(api_key=s.api_key,
                                           min_version=s.advertised_min_version,
                                           max_version=s.max_version)
            for s in sorted(HANDLERS.values(), key=lambda s: s.api_key)]


def _error_response(request, error_code, ctx):
    return ApiVersionsResponse(error_code=error_code, api_keys=_api_keys())


@handler(18, 0, 4, error_response=_error_response)
def handle(ctx, request):
    # KIP-511: v3+ clients send their software name and version; Kafka validates
    # them (INVALID_REQUEST for bad characters). We accept anything.
    return ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=_api_keys())
