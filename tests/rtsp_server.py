"""An RTSP server for the tests: GStreamer's gst-rtsp-server playing an MP4's H.264 at its own pace.

usage: /usr/bin/python3 tests/rtsp_server.py PORT FILE.mp4   (serves rtsp://127.0.0.1:PORT/stream)
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, path = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# The coded pictures as they are in the file, paced by their timestamps: no re-encoding.
factory.set_launch(f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/stream", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
