"""The bind preflight (pure): a rendered config against a host's addresses and sockets."""

from __future__ import annotations

from clusterctl.facts import Network, Socket, parse_gather
from clusterctl.preflight import Bind, config_binds, named_dirs, problems

HOST = (("lo", "127.0.0.1/8"), ("lo", "::1/128"), ("eth0", "198.18.0.11/24"))
NET = Network(addresses=HOST, sockets=(), server_pids=frozenset({40, 41}))

HAPROXY = """global
    stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners
    server-state-file /var/lib/haproxy/server-state
frontend svc-web
    bind *:80
    bind 198.18.0.240:8088
    bind [2001:db8::1]:8443 ssl crt /etc/haproxy/certs/web.pem
"""
NGINX = """pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
http {
    client_body_temp_path /var/lib/nginx/body;
    server {
        listen 80 default_server;
        listen 198.18.0.11:8080;
        listen [::1]:8081 ssl;
    }
    server {
        listen 80;
    }
}
"""
APACHE = """ErrorLog /var/log/apache2/error.log
Listen *:80
Listen 127.0.0.1:8081
Listen 198.18.0.240:8088 https
"""


def test_each_kind_s_listeners_are_read_from_its_config() -> None:
    assert config_binds("haproxy", HAPROXY) == [
        Bind("*", 80),
        Bind("198.18.0.240", 8088),
        Bind("2001:db8::1", 8443),
    ]
    assert config_binds("nginx", NGINX) == [
        Bind("*", 80),
        Bind("198.18.0.11", 8080),
        Bind("::1", 8081),
    ]
    assert config_binds("apache", APACHE) == [
        Bind("*", 80),
        Bind("127.0.0.1", 8081),
        Bind("198.18.0.240", 8088),
    ]
    assert str(Bind("2001:db8::1", 8443)) == "[2001:db8::1]:8443"
    assert str(Bind("*", 80)) == "0.0.0.0:80"


def test_an_address_the_host_does_not_have_is_named() -> None:
    found = problems("haproxy", HAPROXY, NET)
    assert found == [
        "198.18.0.240:8088: 198.18.0.240 is not an address of this host (it has "
        "127.0.0.1, 198.18.0.11, ::1; net.ipv4.ip_nonlocal_bind is 0)",
        "[2001:db8::1]:8443: 2001:db8::1 is not an address of this host (it has "
        "127.0.0.1, 198.18.0.11, ::1; net.ipv6.ip_nonlocal_bind is 0)",
    ]
    assert problems("nginx", NGINX, NET) == []  # its own address, loopback ones, wildcards


def test_non_local_binding_allows_any_address_of_its_family() -> None:
    v4 = Network(addresses=HOST, nonlocal_bind=(True, False), sockets=())
    assert [p.split(" ")[0] for p in problems("haproxy", HAPROXY, v4)] == ["[2001:db8::1]:8443:"]
    both = Network(addresses=HOST, nonlocal_bind=(True, True), sockets=())
    assert problems("haproxy", HAPROXY, both) == []


def test_every_loopback_address_and_the_wildcards_are_local() -> None:
    cfg = "Listen 127.0.0.2:8081\nListen [::]:8082\nListen 0.0.0.0:8083\n"
    assert problems("apache", cfg, NET) == []


def test_a_port_held_by_another_process_is_named_one_held_by_the_server_is_not() -> None:
    squatter = Socket("0.0.0.0", 8080, (("python3", 977),))
    ours = Socket("0.0.0.0", 80, (("nginx", 41),))
    net = Network(addresses=HOST, sockets=(squatter, ours), server_pids=frozenset({40, 41}))
    assert problems("nginx", NGINX, net) == [
        "198.18.0.11:8080: 0.0.0.0:8080 is already in use by python3 (pid 977)"
    ]


def test_which_sockets_collide() -> None:
    def clash(cfg: str, sock: Socket) -> bool:
        net = Network(addresses=HOST, sockets=(sock,))
        return bool(problems("apache", cfg, net))

    other = (("sshd", 1),)
    assert clash("Listen 80\n", Socket("198.18.0.11", 80, other))
    assert clash("Listen 198.18.0.11:80\n", Socket("0.0.0.0", 80, other))
    assert clash("Listen 198.18.0.11:80\n", Socket("*", 80, other))  # dual-stack wildcard
    assert not clash("Listen 198.18.0.11:80\n", Socket("127.0.0.1", 80, other))
    assert not clash("Listen 198.18.0.11:80\n", Socket("[::]", 80, other))  # IPv6 only
    assert not clash("Listen 198.18.0.11:80\n", Socket("198.18.0.11", 81, other))
    assert clash("Listen [::1]:80\n", Socket("[::]", 80, other))
    # A socket whose process ss could not see is somebody else's.
    net = Network(addresses=HOST, sockets=(Socket("0.0.0.0", 80, ()),))
    assert problems("apache", "Listen 80\n", net) == [
        "0.0.0.0:80: 0.0.0.0:80 is already in use by a process clusterctl cannot see"
    ]


def test_facts_that_could_not_be_read_refuse_nothing() -> None:
    assert problems("haproxy", HAPROXY, Network()) == []


def test_gathered_network_facts_parse() -> None:
    text = "\n".join(
        [
            "VERSION HAProxy version 2.6.12-1 2023/04/01",
            "NONLOCAL 0 1",
            "NET addr",
            "ADDR lo 127.0.0.1/8",
            "ADDR eth0 198.18.0.11/24",
            "NET sockets",
            'SOCK 0.0.0.0:80 0.0.0.0:* users:(("haproxy",pid=834,fd=7),("haproxy",pid=835,fd=7))',
            'SOCK 127.0.0.53%lo:53 0.0.0.0:* users:(("resolved",pid=9,fd=3))',
            "SOCK [::]:22 [::]:*",
            "SERVER 24",
            "SERVER 834",
            "MANIFEST",
            "MANAGED /etc/haproxy/certs/old.pem",
            "FILE 600 root root " + "a" * 64 + " /etc/haproxy/certs/old.pem",
        ]
    )
    facts = parse_gather("lb1", text)
    net = facts.network
    assert net.nonlocal_bind == (False, True)
    assert net.addresses == (("lo", "127.0.0.1/8"), ("eth0", "198.18.0.11/24"))
    assert net.sockets == (
        Socket("0.0.0.0", 80, (("haproxy", 834), ("haproxy", 835))),
        Socket("127.0.0.53", 53, (("resolved", 9),)),
        Socket("[::]", 22, ()),
    )
    assert net.server_pids == {24, 834}
    assert facts.managed == ("/etc/haproxy/certs/old.pem",)
    assert facts.files["/etc/haproxy/certs/old.pem"].exists
    # A host where `ip` and `ss` could not run: nothing to judge by, not "no addresses".
    bare = parse_gather("lb1", "VERSION nginx version: nginx/1.22.1")
    assert bare.network.addresses is None and bare.network.sockets is None
    assert bare.managed is None


def test_the_folders_a_config_writes_into() -> None:
    assert named_dirs("haproxy", HAPROXY) == ["/run/haproxy", "/var/lib/haproxy"]
    assert named_dirs("nginx", NGINX) == ["/run", "/var/lib/nginx", "/var/log/nginx"]
    assert named_dirs("apache", APACHE) == ["/var/log/apache2"]
