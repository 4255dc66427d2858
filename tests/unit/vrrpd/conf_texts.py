"""Config text shared by the unit tests of the daemon's process layout: one VRRP instance
(VI_1, VRID 51, VIP 10.0.0.100) and one virtual server on that VIP."""

from __future__ import annotations

VRRP = """
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress { 10.0.0.100 }
}
"""
VS = """
virtual_server 10.0.0.100 80 {
    protocol TCP
    lb_algo rr
    lb_kind DR
    real_server 10.0.0.5 80 { weight 1 }
}
"""
