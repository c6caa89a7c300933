"""The Logux v5 protocol, sans I/O: messages, codecs, ids, the hybrid clock and the session.

Nothing here does I/O or uses asyncio; the server feeds it and writes what it returns.
"""

from logsync.protocol.codec import JSON, MSGPACK, Codec, codec_for
from logsync.protocol.events import (
    ActionsReceived,
    CloseRequested,
    ConnectRequested,
    ErrorReceived,
    Event,
    HeadersReceived,
    SyncedReceived,
)
from logsync.protocol.messages import PROTOCOL_VERSION, Message, ProtocolError, validate
from logsync.protocol.session import Session, State

__all__ = [
    "JSON",
    "MSGPACK",
    "PROTOCOL_VERSION",
    "ActionsReceived",
    "CloseRequested",
    "Codec",
    "ConnectRequested",
    "ErrorReceived",
    "Event",
    "HeadersReceived",
    "Message",
    "ProtocolError",
    "Session",
    "State",
    "SyncedReceived",
    "codec_for",
    "validate",
]
