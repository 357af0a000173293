"""gzip for Connect messages, decompressed in C: connectrpc's own parses each gzip header in Python.

Same name and same wire as connectrpc's GzipCompression, so the headers Cursor sees are
unchanged; only the per-message cost on streams (one small gzip member per frame) drops.
"""

from __future__ import annotations

import zlib

from connectrpc.compression.gzip import GzipCompression

GZIP_WBITS = 31  # zlib with a gzip header and trailer


class FastGzip(GzipCompression):
    def decompress(self, data: bytes | bytearray | memoryview, read_max_bytes: int | None = None) -> bytes:
        if data:
            decompressor = zlib.decompressobj(wbits=GZIP_WBITS)
            limit = 0 if read_max_bytes is None else read_max_bytes + 1
            try:
                out = decompressor.decompress(data, limit)
            except zlib.error:
                out = None
            # One complete member within the limit: the common case. Anything else
            # (several members, a size limit hit, corrupt data) gets the library's handling.
            complete = out is not None and decompressor.eof and not decompressor.unused_data
            if complete and out is not None and (read_max_bytes is None or len(out) <= read_max_bytes):
                return out
        return super().decompress(data, read_max_bytes)
