"""What every front-end kind shares: default paths, TLS files, route order, the view helpers.

A driver knows one kind: its template, its Debian paths, its validator and reload commands,
and how to turn the model into the plain values its template prints. Adding a kind means
adding one driver module and one template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from clusterctl.model.semantics import frontend_services, service_pools
from clusterctl.model.versions import kind_version

if TYPE_CHECKING:
    from clusterctl.model.schema import Frontend, Inventory, Pool, Route, Service
    from clusterctl.render import File

# Mozilla's server-side TLS guidelines (ssl-config.mozilla.org, version 5.7), ECDHE suites only
# so no dhparam file is needed. Without a curve list OpenSSL also accepts X448 and secp521r1.
TLS_PROFILES: dict[str, dict[str, Any]] = {
    "intermediate": {
        "min": "TLSv1.2",
        "protocols": ["TLSv1.2", "TLSv1.3"],
        "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
        "suites": "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        "curves": "X25519:prime256v1:secp384r1",
    },
    "modern": {
        "min": "TLSv1.3",
        "protocols": ["TLSv1.3"],
        "ciphers": "",
        "suites": "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        "curves": "X25519:prime256v1:secp384r1",
    },
}


@dataclass(frozen=True)
class KindPaths:
    config: str
    tls_dir: str
    pid_file: str
    admin_socket: str = ""
    state_file: str = ""


def seconds(ms: int) -> str:
    """A duration for configs that take units: whole seconds where exact, else milliseconds."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def whole_seconds(ms: int) -> int:
    """A duration for configs that only take seconds (Apache): rounded up, at least 1."""
    return max(1, -(-ms // 1000))


def ordered_routes(svc: Service) -> list[Route]:
    """Most specific first: routes with a host before those without, then longer paths first.

    All three kinds then agree on which route wins, whatever order the inventory lists them in
    (nginx picks the longest location prefix by itself; HAProxy and Apache take the first match).
    """
    return sorted(svc.routes, key=lambda r: (r.host is None, -len(r.path or "")))


class Driver:
    kind: ClassVar[str]
    template: ClassVar[str]
    defaults: ClassVar[KindPaths]
    reload: ClassVar[tuple[str, ...]]
    start: ClassVar[tuple[str, ...]]

    def paths(self, fe: Frontend) -> KindPaths:
        p = fe.paths
        d = self.defaults
        return KindPaths(
            config=p.config or d.config,
            tls_dir=p.tls_dir or d.tls_dir,
            pid_file=p.pid_file or d.pid_file,
            admin_socket=p.admin_socket or d.admin_socket,
            state_file=p.state_file or d.state_file,
        )

    def reload_argv(self, fe: Frontend) -> tuple[str, ...]:
        return fe.reload or self.reload

    def start_argv(self, fe: Frontend) -> tuple[str, ...]:
        return fe.start or self.start

    def validate_argv(self, config: str, root: str = "") -> list[str]:
        raise NotImplementedError

    def before_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        """A fixed script and its arguments to run on the host before a reload, if any."""
        return None

    def after_reload(self, fe: Frontend) -> tuple[str, list[str]] | None:
        """A fixed script and its arguments to run once a reload is confirmed, if any."""
        return None

    def runtime_dirs(self, fe: Frontend) -> list[str]:
        """Folders the server expects to exist (created under the root when checking)."""
        return []

    def support_files(self, inv: Inventory, fe: Frontend) -> dict[str, str]:
        """Files the config loads besides itself: their path on the host -> their template."""
        return {}

    def body_limit_path(self, fe: Frontend) -> str:
        """The Lua script that enforces max_body on bodies without a Content-Length."""
        return self.paths(fe).config.rsplit("/", 1)[0] + "/clusterctl-body-limit.lua"

    def tls_paths(self, fe: Frontend, svc: Service) -> dict[str, str]:
        base = f"{self.paths(fe).tls_dir}/{svc.name}"
        return {"certificate": f"{base}.crt", "key": f"{base}.key"}

    def tls_files(self, inv: Inventory, fe: Frontend) -> dict[str, File]:
        from clusterctl.render import File

        out: dict[str, File] = {}
        for svc in frontend_services(inv, fe):
            if svc.tls is None:
                continue
            cert = inv.files.get(svc.tls.certificate, b"")
            key = inv.files.get(svc.tls.key, b"")
            paths = self.tls_paths(fe, svc)
            if paths["certificate"] == paths["key"]:
                out[paths["key"]] = File(cert + key, mode=0o600, secret=True)
            else:
                out[paths["certificate"]] = File(cert, mode=0o644)
                out[paths["key"]] = File(key, mode=0o600, secret=True)
        return out

    def view(self, inv: Inventory, fe: Frontend, root: str) -> dict[str, Any]:
        """The plain values the template prints."""
        services = frontend_services(inv, fe)
        pools: dict[str, Pool] = {}
        for svc in services:
            for pool in service_pools(inv, svc):
                pools.setdefault(pool.name, pool)
        return {
            "fe": fe,
            "source": inv.cluster,
            "version": kind_version(fe),
            "root": root,
            "paths": _rooted(self.paths(fe), root),
            "services": services,
            "pools": [pools[n] for n in sorted(pools)],
            "timeouts": _pool_timeouts(services, inv),
            "tls": {
                s.name: {k: root + v for k, v in self.tls_paths(fe, s).items()}
                for s in services
                if s.tls
            },
            "profiles": TLS_PROFILES,
            "body_limit_lua": root + self.body_limit_path(fe),
            "routes": {s.name: ordered_routes(s) for s in services},
            "seconds": seconds,
            "whole_seconds": whole_seconds,
        }


def _rooted(paths: KindPaths, root: str) -> KindPaths:
    return KindPaths(**{k: root + v if v else v for k, v in vars(paths).items()})


def _pool_timeouts(services: tuple[Service, ...], inv: Inventory) -> dict[str, dict[str, int]]:
    """Backend-side timeouts per pool: the longest any service using the pool asks for."""
    out: dict[str, dict[str, int]] = {}
    for svc in services:
        for pool in service_pools(inv, svc):
            t = out.setdefault(pool.name, {"connect": 0, "server": 0})
            t["connect"] = max(t["connect"], svc.timeouts.connect)
            t["server"] = max(t["server"], svc.timeouts.server)
    return out
