"""Clients used from ordinary (non-asyncio) code: BlockingClient and CallbackClient.

Each client runs its own ioloop in a daemon thread.  Failures come back as
``fail`` replies, never as hangs: not connected, timed out, or disconnected.
"""

import threading
import time

from katcp import BlockingClient, CallbackClient, DeviceServer, Message
from katcp.kattypes import Float, request, return_reply


class Slow(DeviceServer):
    VERSION_INFO = ("slow", 1, 0)
    BUILD_INFO = ("slow", 1, 0, "")

    def setup_sensors(self):
        pass

    @request(Float())
    @return_reply(Float())
    def request_wait(self, req, seconds):
        """Block this server's request handler thread for a while, then reply."""
        time.sleep(seconds)
        return ("ok", seconds)


def main():
    server = Slow("127.0.0.1", 0)
    server.start(timeout=5)            # default concurrency: handlers run in a handler thread
    host, port = server.bind_address

    # BlockingClient: blocking_request() returns (reply, informs).
    client = BlockingClient(host, port, timeout=5)   # timeout: default for each request
    client.start()
    print("connected:", client.wait_protocol(timeout=5))
    reply, informs = client.blocking_request(Message.request("help", "wait"))
    print(bytes(informs[0]).split(b"\\_")[0], bytes(reply))
    reply, _ = client.blocking_request(Message.request("wait", 0.5), timeout=0.1)
    print("timeout ->", reply.arguments[0], b"timed\\_out" in bytes(reply))

    # CallbackClient: callback_request() returns at once; callbacks run in its ioloop thread.
    cb_client = CallbackClient(host, port)
    cb_client.start()
    cb_client.wait_protocol(timeout=5)
    done = threading.Event()
    got = []

    def on_inform(msg):
        got.append(msg.arguments[0])

    def on_reply(msg):
        got.append(bytes(msg))
        done.set()

    cb_client.callback_request(Message.request("help"), reply_cb=on_reply,
                               inform_cb=on_inform, timeout=5)
    done.wait(5)
    print("callback results:", b" ".join(got[:-1]), got[-1])

    # A request in flight when the server goes away ends with a fail reply.
    done.clear()
    cb_client.callback_request(Message.request("wait", 1.0), reply_cb=on_reply, timeout=10)
    time.sleep(0.1)
    server.stop(timeout=5)
    server.join(timeout=5)
    print("server stopped; reply arrived:", done.wait(5), got[-1].split(b" ")[:2])

    # Not connected: blocking_request fails at once instead of waiting.
    client.wait_disconnected(timeout=5)
    reply, _ = client.blocking_request(Message.request("watchdog"))
    print("not connected ->", bytes(reply).split(b"\\_")[0])

    for c in (client, cb_client):
        c.stop()
        c.join(timeout=5)


if __name__ == "__main__":
    main()
