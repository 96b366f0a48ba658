"""A KATCPClientResource used from plain (threaded) code, e.g. a script or a notebook.

The resource lives in a managed ioloop thread; ThreadSafeKATCPClientResourceWrapper
turns its futures into blocking calls that return results.
"""

from katcp import DeviceServer, KATCPClientResource, Sensor
from katcp.ioloop_manager import IOLoopManager, IOLoopThreadWrapper
from katcp.kattypes import Float, request, return_reply
from katcp.resource_client import ThreadSafeKATCPClientResourceWrapper


class Attenuator(DeviceServer):
    VERSION_INFO = ("attenuator", 1, 0)
    BUILD_INFO = ("attenuator", 1, 0, "")

    def setup_sensors(self):
        self.atten = Sensor.float("attenuation", "Attenuation", "dB", default=0.0,
                                  initial_status=Sensor.NOMINAL)
        self.add_sensor(self.atten)

    @request(Float(min=0.0, max=31.5))
    @return_reply()
    def request_set_attenuation(self, req, db):
        """Set the attenuation in dB."""
        self.atten.set_value(db)
        return ("ok",)


def main():
    server = Attenuator("127.0.0.1", 0)
    server.start(timeout=5)

    ioloop_manager = IOLoopManager()             # an event loop in a daemon thread
    ioloop = ioloop_manager.get_ioloop()
    ioloop_manager.start(timeout=5)
    resource = KATCPClientResource(dict(name="atten", address=server.bind_address,
                                        controlled=True))
    resource.set_ioloop(ioloop)
    ioloop.add_callback(resource.start)
    atten = ThreadSafeKATCPClientResourceWrapper(resource, IOLoopThreadWrapper(ioloop))

    atten.until_synced(timeout=5)                # blocks; raises on timeout
    reply = atten.req.set_attenuation(12.5)      # blocks; returns the KATCPReply
    print("set:", reply.succeeded, atten.sensor.attenuation.get_value())
    reply = atten.req.set_attenuation(40)        # out of range: a fail reply
    print("refused:", reply.succeeded)
    atten.sensor.attenuation.set_strategy("event")
    server.atten.set_value(3.0)
    print("reached 3.0:", atten.wait("attenuation", 3.0, timeout=5))

    atten.stop()
    ioloop_manager.stop()
    ioloop_manager.join(timeout=5)
    server.stop()
    server.join(timeout=5)


if __name__ == "__main__":
    main()
