"""katcp-python 0.9 code running on katcp: old-style handlers beside new ones.

The tornado-coroutine handler is written exactly as for katcp-python 0.9 (minus Python 2);
the ``async def`` one is the new spelling.  ``stop()`` returns a future to wait on, and a
request while disconnected comes back as a real ``fail`` reply.
"""

import asyncio

import tornado.gen

from katcp import BlockingClient, DeviceServer, Message
from katcp.kattypes import Float, request, return_reply


class Cryostat(DeviceServer):
    VERSION_INFO = ("cryostat", 1, 0)
    BUILD_INFO = ("cryostat", 1, 0, "")

    def setup_sensors(self):
        pass

    # katcp-python 0.9 style: a tornado coroutine returning through gen.Return.
    @request(Float())
    @return_reply(Float())
    @tornado.gen.coroutine
    def request_old_style(self, req, seconds):
        """Wait, then reply (tornado coroutine)."""
        yield tornado.gen.sleep(seconds)
        raise tornado.gen.Return(("ok", seconds))

    # katcp: the same handler as a native coroutine.
    @request(Float())
    @return_reply(Float())
    async def request_new_style(self, req, seconds):
        """Wait, then reply (async def)."""
        await asyncio.sleep(seconds)
        return ("ok", seconds)


server = Cryostat("127.0.0.1", 0)
server.set_concurrency_options(thread_safe=False, handler_thread=False)
server.start(timeout=5)
client = BlockingClient(*server.bind_address)
client.start()
client.wait_protocol(timeout=5)
for name in ("old-style", "new-style"):
    reply, informs = client.blocking_request(Message.request(name, 0.01), timeout=5)
    print(name, "->", reply)

# stop() returns a StopFuture: block on it from a thread (or await it in a coroutine).
stopped = server.stop()
stopped.result(timeout=5)
server.join(timeout=5)
print("server stopped:", stopped.done())

# Once the client has seen the server go, a request comes back at once as a real fail reply.
client.wait_disconnected(timeout=5)
reply, informs = client.blocking_request(Message.request("watchdog"), timeout=1)
print("disconnected ->", reply.mtype == Message.REPLY, reply.reply_ok(),
      reply.arguments[1].decode().split(" to ")[0])
client.stop()
client.join(timeout=5)
