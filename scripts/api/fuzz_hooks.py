"""Schemathesis hooks for Rekey's API fuzzing (scripts/api/fuzz.sh).

The import route takes newline-delimited JSON (`application/x-ndjson`), which schemathesis has
no serializer for: the document declares the body text, and this sends the text as is. A value
that is not text (the fuzzer's "wrong type" body) has no bytes in a text media type, so it is
sent as no body at all, which the server refuses.
"""
import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, str):
        return value.encode("utf-8")
    return None
