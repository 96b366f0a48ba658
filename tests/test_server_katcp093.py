"""Our device server driven by katcp-python 0.9.3's own BlockingClient (in its venv).

Skipped, with the reason, when katcp-python 0.9.3 cannot be found or installed
(see ``tests/peers.py``).
"""

from __future__ import annotations

import json
import subprocess

import peers
from test_server_support import ExampleServer, running

CLIENT_SCRIPT = r'''
import json, sys, threading
import katcp

host, port = sys.argv[1], int(sys.argv[2])
statuses = []
got_status = threading.Event()

class Client(katcp.BlockingClient):
    def inform_sensor_status(self, msg):
        """Collect #sensor-status."""
        statuses.append([a.decode() for a in msg.arguments])
        got_status.set()

client = Client(host, port)
client.start()
try:
    assert client.wait_protocol(timeout=5), "no protocol info"
    out = {"ids": client.protocol_flags.message_ids,
           "major": client.protocol_flags.major}

    def req(*args):
        reply, informs = client.blocking_request(katcp.Message.request(*args), timeout=5)
        return ([a.decode() for a in reply.arguments],
                [[a.decode() for a in i.arguments] for i in informs],
                reply.mid.decode() if reply.mid else None)

    out["watchdog"] = req("watchdog")
    out["sensor_list"] = req("sensor-list", "an.int")
    out["help"] = req("help", "echo")
    out["unknown"] = req("no-such")
    out["fail"] = req("fail")
    out["sampling"] = req("sensor-sampling", "an.int", "event")
    got_status.wait(5)
    out["statuses"] = statuses
    print(json.dumps(out))
finally:
    client.stop()
    client.join(timeout=5)
'''


def test_katcp_python_blocking_client():
    python = peers.katcp093_python()
    with running(ExampleServer("127.0.0.1", 0)) as srv:
        host, port = srv.bind_address
        proc = subprocess.run([python, "-I", "-c", CLIENT_SCRIPT, host, str(port)],
                              capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert out["major"] == 5 and out["ids"] is True
    reply, informs, mid = out["watchdog"]
    assert reply == ["ok"] and mid is not None  # katcp-python used message ids
    reply, informs, _ = out["sensor_list"]
    assert reply == ["ok", "1"]
    assert informs == [["an.int", "An integer.", "count", "integer", "0", "10"]]
    assert out["help"][0] == ["ok", "1"] and out["help"][1] == [["echo", "Echo the arguments."]]
    assert out["unknown"][0] == ["invalid", "Unknown request."]
    assert out["fail"][0] == ["fail", "this request fails"]
    assert out["sampling"][0] == ["ok", "an.int", "event"]
    assert out["statuses"] and out["statuses"][0][2:] == ["an.int", "unknown", "3"]
