"""The seed scenarios (../shared/seeds, written for keepalived 1.2/1.3) load with no error.

The configs are typed in as the seeds show them, comments and all.  Every
``etc/*.conf`` in the repository must load without ERROR/FATAL as well.
"""

from __future__ import annotations

import pathlib
from ipaddress import IPv4Address, IPv4Interface

import pytest

from vrrpd.config.errors import Severity
from vrrpd.config.loader import LoadResult, load, load_text
from vrrpd.config.model import InitialState, LvsMethod, Protocol, Scheduler, TcpCheck

REPO = pathlib.Path(__file__).resolve().parents[4]

SEED_000_MASTER = """\
! Configuration File for keepalived

global_defs {
notification_email {
[email]acassen@firewall.loc[/email] #设置报警邮件地址,可以设置多个,每行一个。
[email]failover@firewall.loc[/email] #需开启本机的sendmail服务
[email]sysadmin@firewall.loc[/email]
}
notification_email_from [email]Alexandre.Cassen@firewall.loc[/email] #设置邮件的发送地址
smtp_server 127.0.0.1 #设置smtp server地址
smtp_connect_timeout 30 #设置连接smtp server的超时时间
router_id LVS_DEVEL #表示运行keepalived服务器的一个标识。
}

vrrp_instance VI_1 {
state MASTER #指定keepalived的角色
interface eno16777736 #指定HA监测网络的接口
virtual_router_id 51 #虚拟路由标识
priority 100 #定义优先级
advert_int 1 #设定MASTER与BACKUP负载均衡器之间同步检查的时间间隔,单位是秒
authentication { #设置验证类型和密码
auth_type PASS #设置验证类型,主要有PASS和AH两种
auth_pass 1111 #设置验证密码
}
virtual_ipaddress { #设置虚拟IP地址,可以设置多个虚拟IP地址,每行一个
192.168.244.10
}
}

virtual_server 192.168.244.10 8066 { #设置虚拟服务器
delay_loop 6 #设置运行情况检查时间,单位是秒
lb_algo rr #设置负载调度算法,这里设置为rr,即轮询算法
lb_kind DR #设置LVS实现负载均衡的机制
nat_mask 255.255.255.0
persistence_timeout 50 #会话保持时间,单位是秒。
protocol TCP #指定转发协议类型,有TCP和UDP两种

real_server 192.168.244.148 8066 { #配置服务节点1
weight 1 #配置服务节点的权值
TCP_CHECK { #realserver的状态检测设置部分,单位是秒
connect_timeout 3 #表示3秒无响应超时
nb_get_retry 3 #表示重试次数
delay_before_retry 3 #表示重试间隔
connect_port 8066
}
}
real_server 192.168.244.149 8066 {
weight 1
TCP_CHECK {
connect_timeout 3
nb_get_retry 3
delay_before_retry 3
connect_port 8066
}
}
}
"""

SEED_001_MASTER = """\
vrrp_script chk_haproxy {
    script "killall -0 haproxy"   # verify the pid existance
    interval 2                    # check every 2 seconds
    weight -2                     # add 2 points of prio if OK
}
vrrp_instance VI_1 {
    interface eth1                # interface to monitor
    state MASTER
    virtual_router_id 51          # Assign one ID for this route
    priority 101                  # 101 on master, 100 on backup
    nopreempt
    debug
    virtual_ipaddress {
        10.1.6.173
    }
    track_script {   #注意大括号空格
        chk_haproxy
    }
    notify_master /etc/keepalived/scripts/start_haproxy.sh #表示当切换到master状态时,要执行的脚本
    notify_fault /etc/keepalived/scripts/stop_keepalived.sh #故障时执行的脚本
    notify_stop /etc/keepalived/scripts/stop_haproxy.sh
}
"""

SEED_002_MASTER = """\
global_defs {
   notification_email {
     liuhl@briup.com
   }
   notification_email_from liuhl@briup.com
   smtp_server 127.0.0.1
   smtp_connect_timeout 30
   router_id mysql_ha01
}
vrrp_instance VI_1 {
    state MASTER
    interface ens33          #配置哪个网卡去进行心跳包的传输
    virtual_router_id 51
    priority 100             #成为主节点
    nopreempt                #不抢占资源
    advert_int 1             #心跳包的频率 1秒一次
    authentication {         #两台主机通信心跳包的加密
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        192.168.41.222/24    #虚拟ip
    }
}
virtual_server 1.0.0.3 3306 {
    delay_loop 2             #每个2秒检查一次real_server状态
    lb_algo wrr              #LVS算法
    lb_kind DR
    persistence_timeout 60   #会话保持时间
    protocol TCP
    real_server 192.168.41.201 3306 {
        weight 3
        notify_down /home/shell/closekeepalived.sh   #检测到服务down后执行的脚本
        TCP_CHECK {
            connect_timeout 10   #连接超时时间
            nb_get_retry 3       #重连次数
            delay_before_retry 3 #重连间隔时间
            connect_port 3306    #健康检查端口
        }
    }
}
"""

SEED_003_BACKUP = """\
global_defs {
    router_id LVS_2  # 设置lvs的id,在一个网络内应该是唯一的
}

#vrrp_sync_group test_group {
#group {
#  VI_1
#}
#}

vrrp_instance VI_1 {
    state BACKUP   #指定Keepalived的角色,MASTER为主,BACKUP为备
    interface eth0  #虚拟ip所在网
 #   lvs_sync_daemon_interface eth0
    virtual_router_id 51  #虚拟路由编号,主备要一致
    priority 50  #定义优先级,数字越大,优先级越高,主DR必须大于备用DR
    advert_int 1  #检查间隔,默认为1s
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        10.0.7.247/24  #定义虚拟IP(VIP)为10.0.7.247,可多设,每行一个
    }
}
# 定义对外提供服务的LVS的VIP以及port
virtual_server 10.0.7.247 80 {
    delay_loop 6 # 设置健康检查时间,单位是秒
    lb_algo wlc # 设置负载调度的算法为wlc 基于权重的调度算法
    #lb_algo wrr # 设置负载调度的算法为wrr 加权轮询调度算法
   # lb_algo rr # 设置负载调度的算法为wrr 轮询调度算法
    lb_kind DR # 设置LVS实现负载的机制,有NAT、TUN、DR三个模式,该处使用直接路由模式DR
    nat_mask 255.255.255.0
   # persistence_timeout 20 会话保持时间   (为了实验效果可以注释掉该选项)
    protocol TCP

  real_server 10.0.7.211 80 {  # 指定real server1的IP地址
        weight 60   # 配置节点权值,数字越大权重越高
        TCP_CHECK {
        connect_timeout 20
        nb_get_retry 3
        #delay_before_retry 3
        connect_port 80
        }
    }
  real_server 10.0.7.29 80 {  # 指定real server2的IP地址
        weight 40  # 配置节点权值,数字越大权重越高
        TCP_CHECK {
        connect_timeout 20
        nb_get_retry 3
      # delay_before_retry 3
        connect_port 80
        }
     }
 }
"""


def no_errors(result: LoadResult) -> None:
    bad = [str(d) for d in result.diagnostics if d.severity >= Severity.ERROR]
    assert bad == []


def warnings(result: LoadResult) -> list[str]:
    return [d.message for d in result.diagnostics if d.severity is Severity.WARNING]


def test_seed_000_lvs_dr_mycat_master() -> None:
    result = load_text(SEED_000_MASTER, filename="000.conf")
    no_errors(result)
    config = result.config
    assert config.global_defs.router_id == "LVS_DEVEL"
    assert len(config.global_defs.notification_email) == 3
    (inst,) = config.vrrp_instances
    assert (inst.state, inst.priority, inst.virtual_router_id, inst.interface) == \
        (InitialState.MASTER, 100, 51, "eno16777736")
    assert [v.address for v in inst.virtual_ipaddresses] == [IPv4Interface("192.168.244.10/32")]
    assert inst.authentication.auth_pass == "1111"
    (vs,) = config.virtual_servers
    assert (vs.scheduler, vs.lvs_method, vs.protocol, vs.persistence_timeout, vs.delay_loop) == \
        (Scheduler.RR, LvsMethod.DR, Protocol.TCP, 50, 6.0)
    assert [(str(rs.address), rs.port, rs.weight) for rs in vs.real_servers] == \
        [("192.168.244.148", 8066, 1), ("192.168.244.149", 8066, 1)]
    for rs in vs.real_servers:
        (chk,) = rs.checkers
        assert isinstance(chk, TcpCheck)
        assert (chk.connect_timeout, chk.retry, chk.delay_before_retry, chk.connect_port,
                chk.delay_loop) == (3.0, 1, 3.0, 8066, 6.0)  # nb_get_retry ignored, as 2.2.7
    msgs = warnings(result)
    assert sum("'nat_mask' is deprecated" in m for m in msgs) == 1
    assert sum("'nb_get_retry' is ignored" in m for m in msgs) == 2


def test_seed_001_vrrp_script_haproxy() -> None:
    result = load_text(SEED_001_MASTER, filename="001.conf")
    no_errors(result)
    config = result.config
    script = config.vrrp_scripts["chk_haproxy"]
    assert (script.script.argv, script.interval, script.weight) == \
        (("killall", "-0", "haproxy"), 2.0, -2)
    (inst,) = config.vrrp_instances
    # keepalived clears nopreempt on a `state MASTER` instance (and says so): so do we
    assert (inst.priority, inst.nopreempt, inst.interface) == (101, False, "eth1")
    assert any("nopreempt will not work" in m for m in warnings(result))
    assert [t.name for t in inst.track_scripts] == ["chk_haproxy"]
    assert inst.notify_master is not None
    assert inst.notify_master.argv == ("/etc/keepalived/scripts/start_haproxy.sh",)
    assert inst.notify_fault is not None and inst.notify_stop is not None
    assert any("'debug' is parsed but not acted on" in m for m in warnings(result))
    assert any("'debug' without a level is deprecated" in m for m in warnings(result))


def test_seed_002_mysql_nopreempt_wrr() -> None:
    result = load_text(SEED_002_MASTER, filename="002.conf")
    no_errors(result)
    (inst,) = result.config.vrrp_instances
    assert (inst.state, inst.priority, inst.nopreempt) == (InitialState.MASTER, 100, False)
    assert any("nopreempt will not work" in m for m in warnings(result))
    assert inst.virtual_ipaddresses[0].address == IPv4Interface("192.168.41.222/24")
    (vs,) = result.config.virtual_servers
    assert (vs.scheduler, vs.persistence_timeout, vs.delay_loop) == (Scheduler.WRR, 60, 2.0)
    (rs,) = vs.real_servers
    assert rs.weight == 3 and rs.notify_down is not None
    assert rs.notify_down.argv == ("/home/shell/closekeepalived.sh",)
    (chk,) = rs.checkers
    assert (chk.connect_timeout, chk.retry, chk.connect_port) == (10.0, 1, 3306)


def test_seed_003_wlc_web_backup() -> None:
    result = load_text(SEED_003_BACKUP, filename="003.conf")
    no_errors(result)
    (inst,) = result.config.vrrp_instances
    assert (inst.state, inst.priority) == (InitialState.BACKUP, 50)
    (vs,) = result.config.virtual_servers
    assert vs.address == IPv4Address("10.0.7.247") and vs.scheduler is Scheduler.WLC
    assert [(rs.weight, rs.checkers[0].retry, rs.checkers[0].delay_before_retry)
            for rs in vs.real_servers] == [(60, 1, 1.0), (40, 1, 1.0)]


ETC_CONFS = sorted((REPO / "etc").glob("**/*.conf")) if (REPO / "etc").is_dir() else []


@pytest.mark.skipif(not ETC_CONFS, reason="etc/ has no .conf files yet")
@pytest.mark.parametrize("path", ETC_CONFS, ids=[p.name for p in ETC_CONFS])
def test_every_etc_config_loads_without_error(path: pathlib.Path) -> None:
    result = load(path, config_id="lb1")
    no_errors(result)
    config = result.config
    assert config.vrrp_instances or config.virtual_servers
