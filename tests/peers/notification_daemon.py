#!/usr/bin/python3
"""A desktop notification server (org.freedesktop.Notifications) for GUI tests.

It owns the name on the session bus given in DBUS_SESSION_BUS_ADDRESS, prints one JSON
line per call it receives (Notify, CloseNotification) on stdout, and on the command
"invoke ID ACTION" read from stdin emits ActionInvoked(ID, ACTION), which is what a real
notification server does when the user clicks a notification ("default") or one of
its buttons. It prints {"ready": true} once the name is owned.
"""

import json
import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

XML = """
<node>
  <interface name="org.freedesktop.Notifications">
    <method name="Notify">
      <arg type="s" direction="in"/><arg type="u" direction="in"/>
      <arg type="s" direction="in"/><arg type="s" direction="in"/>
      <arg type="s" direction="in"/><arg type="as" direction="in"/>
      <arg type="a{sv}" direction="in"/><arg type="i" direction="in"/>
      <arg type="u" direction="out"/>
    </method>
    <method name="CloseNotification"><arg type="u" direction="in"/></method>
    <method name="GetCapabilities"><arg type="as" direction="out"/></method>
    <method name="GetServerInformation">
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
    </method>
    <signal name="ActionInvoked"><arg type="u"/><arg type="s"/></signal>
    <signal name="NotificationClosed"><arg type="u"/><arg type="u"/></signal>
  </interface>
</node>
"""

PATH = "/org/freedesktop/Notifications"
IFACE = "org.freedesktop.Notifications"
state = {"next": 1, "conn": None}


def say(obj):
    print(json.dumps(obj), flush=True)


def on_call(conn, sender, path, iface, method, params, invocation):
    if method == "Notify":
        app, replaces, _icon, summary, body, actions, _hints, _timeout = params.unpack()
        nid = replaces or state["next"]
        if not replaces:
            state["next"] += 1
        say({"method": "Notify", "id": nid, "app": app, "summary": summary,
             "body": body, "actions": list(actions)})
        invocation.return_value(GLib.Variant("(u)", (nid,)))
    elif method == "CloseNotification":
        (nid,) = params.unpack()
        say({"method": "CloseNotification", "id": nid})
        invocation.return_value(None)
        conn.emit_signal(None, PATH, IFACE, "NotificationClosed", GLib.Variant("(uu)", (nid, 3)))
    elif method == "GetCapabilities":
        invocation.return_value(GLib.Variant("(as)", (["actions", "body"],)))
    elif method == "GetServerInformation":
        invocation.return_value(GLib.Variant("(ssss)", ("natter-test", "natter", "1", "1.2")))


def on_bus(conn, _name):
    state["conn"] = conn
    info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
    conn.register_object(PATH, info, on_call, None, None)


def on_name(_conn, _name):
    say({"ready": True})


def on_stdin(channel, _cond):
    line = channel.readline()
    if not line:
        loop.quit()
        return False
    parts = line.split()
    if len(parts) == 3 and parts[0] == "invoke" and state["conn"] is not None:
        state["conn"].emit_signal(None, PATH, IFACE, "ActionInvoked",
                                  GLib.Variant("(us)", (int(parts[1]), parts[2])))
        say({"invoked": int(parts[1]), "action": parts[2]})
    return True


loop = GLib.MainLoop()
Gio.bus_own_name(Gio.BusType.SESSION, IFACE, Gio.BusNameOwnerFlags.NONE,
                 on_bus, on_name, lambda *_: loop.quit())
GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.IO_IN | GLib.IO_HUP, on_stdin)
loop.run()
