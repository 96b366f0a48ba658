"""KATCP messages: build them, turn them into bytes, parse bytes back, and handle bad input."""

from katcp import KatcpSyntaxError, Message, MessageParser
from katcp.codec import LineCodec

# Build messages.  Arguments may be str, bytes, int, float or bool; they are
# stored as bytes.  bytes(msg) is the wire form without the line terminator.
req = Message.request("set-gain", 2.5, "manual mode", True, mid=7)
print(bytes(req))                         # spaces are escaped as \_, True becomes 1
print(req.name, req.arguments, req.mid)   # name is str, arguments and mid are bytes

# A reply (and informs) answering a request carry its name and message id.
reply = Message.reply_to_request(req, "ok", 2.5)
print(bytes(reply), reply.reply_ok())
inform = Message.reply_inform(req, "detail")
print(bytes(inform), inform.mtype == Message.INFORM)

# Parse one line at a time with MessageParser ...
parser = MessageParser()
msg = parser.parse(b"?sensor-value[3] temperature")
print(msg.mtype == Message.REQUEST, msg.name, msg.mid, msg.arguments)
print(parser.parse(br"#log warn 0.0 root hello\_world\n").arguments)  # escapes are undone

# ... and bad lines raise KatcpSyntaxError (a ValueError).
for bad in [b"no-type-character", b"?9starts-with-digit", b"?name[x] bad-mid"]:
    try:
        parser.parse(bad)
    except KatcpSyntaxError as exc:
        print("syntax error:", exc)

# Invalid names are refused when you build a message, too.
try:
    Message.request("bad name")
except KatcpSyntaxError as exc:
    print("syntax error:", exc)

# LineCodec is the streaming (sans-I/O) codec the connections use: feed it bytes
# as they arrive; it returns complete messages, and KatcpSyntaxError instances
# (not raised) for malformed lines, in order.  Partial lines wait for more data.
codec = LineCodec()
print(codec.feed(b"?watchdog\n!watch"), codec.buffer_size)
for item in codec.feed(b"dog ok\n?bad[ line\n#version-connect katcp-protocol 5.1-MIB\n"):
    print(type(item).__name__, item)
print(codec.encode(Message.reply("help", "ok", 3)))   # wire form with the terminator
