"""A minimal device server with one sensor and two requests, driven by a BlockingClient.

The server runs on a managed ioloop (its own thread); the client is the blocking,
thread-safe client that scripts use.  Both stop cleanly at the end.
"""

from katcp import BlockingClient, DeviceServer, FailReply, Message, Sensor
from katcp.kattypes import Float, Str, request, return_reply


class Thermostat(DeviceServer):
    """A toy instrument: a temperature sensor and a set point."""

    VERSION_INFO = ("thermostat", 1, 0)
    BUILD_INFO = ("thermostat", 1, 0, "")

    def setup_sensors(self):
        """Called by the constructor: create and add the sensors."""
        self._temperature = Sensor.float(
            "temperature", "Measured temperature", "degC", params=[-50.0, 150.0],
            default=20.0, initial_status=Sensor.NOMINAL)
        self.add_sensor(self._temperature)

    def request_echo(self, req, msg):
        """Reply with the request's arguments (a plain handler: it gets the raw message)."""
        return req.make_reply("ok", *msg.arguments)

    @request(Float(min=-50.0, max=150.0))
    @return_reply(Float())
    def request_set_point(self, req, degrees):
        """Set the temperature to reach (degC) and return it."""
        if degrees > 100.0:
            raise FailReply("too hot for this toy")
        self._temperature.set_value(degrees)
        return ("ok", degrees)

    @request(Str())
    @return_reply(Str())
    def request_shout(self, req, text):
        """Return the text in capitals."""
        return ("ok", text.upper())


def main():
    server = Thermostat("127.0.0.1", 0)        # port 0: the OS picks a free port
    server.set_concurrency_options(thread_safe=False, handler_thread=False)
    server.start(timeout=5)                     # no set_ioloop(): a managed ioloop thread
    host, port = server.bind_address
    print("server listening:", host == "127.0.0.1", port > 0)

    client = BlockingClient(host, port)
    client.start()
    try:
        client.wait_protocol(timeout=5)
        for name, args in [("echo", ("hello", "world")),
                           ("set-point", (42.5,)),
                           ("set-point", (120,)),      # FailReply -> "fail" reply
                           ("set-point", ("warm",)),   # bad argument -> "fail" reply
                           ("shout", ("quiet please",)),
                           ("no-such-request", ()),    # unknown -> "invalid" reply
                           ("sensor-value", ("temperature",))]:
            reply, informs = client.blocking_request(Message.request(name, *args), timeout=5)
            for inform in informs:
                print(" ", inform)
            print(reply)
    finally:
        client.stop()
        client.join(timeout=5)
        server.stop(timeout=5)
        server.join(timeout=5)


if __name__ == "__main__":
    main()
