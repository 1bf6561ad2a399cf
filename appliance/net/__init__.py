"""The box's own network (LAN address, voice VLAN, static routes), applied with pyroute2.

`diff()` says what `apply()` would change, `apply()` changes it step by step and undoes the
steps already taken when one fails, and `read_state()` is the live view the admin UI shows.
"""

from appliance.net.apply import NetworkError, apply, diff
from appliance.net.netlink import Netlink
from appliance.net.state import NetState, read_state

__all__ = ["NetState", "Netlink", "NetworkError", "apply", "diff", "read_state"]
