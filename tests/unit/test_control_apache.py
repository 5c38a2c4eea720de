"""Apache's balancer-manager as data: the curl argv, the forms on stdin, the page read back."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from clusterctl.drivers import driver_for
from clusterctl.drivers.apache_control import free_slots, parse_members
from clusterctl.drivers.control import Change, Command, ControlRefused, Live
from clusterctl.model import parse
from clusterctl.model.schema import Frontend
from clusterctl.render import render_frontend

INV = """
cluster: c
frontends: [{name: lb3, kind: apache, address: 192.0.2.13}]
pools:
  - name: app
    health: {path: /health, interval: 3s, rise: 2, fall: 4}
    servers:
      - {name: be1, address: 198.18.35.101, port: 8080, weight: 4}
      - {name: be2, address: 198.18.35.102, port: 8080, state: drain, backup: true}
services:
  - {name: web, listen: [{port: 80}], default_pool: app}
"""
DRIVER = driver_for("apache")
PAGE = (Path(__file__).parent / "data" / "admin" / "balancer-manager-drain.html").read_text()
NONCE = "f32cd9e9-2f4f-fe6e-2dc7-acf5d3deeea5"
URL = "http://127.0.0.1:8081/balancer-manager"


def fe() -> Frontend:
    return parse(INV, "inventory.yaml").frontends[0]


def form(cmd: Command) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(cmd.stdin.decode()))


def test_the_read_is_curl_with_the_token_header_file_never_the_token() -> None:
    (read,) = DRIVER.read_commands(fe())
    assert read.argv == (
        "curl", "-fsS", "--max-time", "5", "-H", "@/etc/apache2/clusterctl-manager.header",
        "-H", f"Referer: {URL}", "--", URL,
    )  # fmt: skip
    assert read.stdin == b""


def test_the_page_gives_views_nonce_member_urls_and_free_slots() -> None:
    live = DRIVER.parse_live(fe(), [PAGE])
    assert [(v.server, v.state) for v in live.views] == [
        ("be1", "drain"),
        ("be2", "ready"),
        ("be3", "ready"),
    ]
    assert live.tokens["nonce:app"] == NONCE
    assert live.tokens["url:app/be2"] == "http://198.18.35.102:8080"
    assert free_slots(PAGE) == {"app": 0}  # "3 [3 Used]": the capture had no growth


def test_a_post_sends_its_form_on_stdin_with_a_referer() -> None:
    live = DRIVER.parse_live(fe(), [PAGE])
    (post,) = DRIVER.change_commands(fe(), live, [Change("weight", "app", "be2", weight=5)])
    assert post.argv[-4:] == ("--data-binary", "@-", "--", URL)
    assert "-H" in post.argv and f"Referer: {URL}" in post.argv
    assert form(post) == {"b": "app", "nonce": NONCE, "w": "http://198.18.35.102:8080", "w_lf": "5"}


def test_add_takes_a_free_slot_then_sets_the_member_up_and_enables_it() -> None:
    page = PAGE.replace("3 [3 Used]", "11 [3 Used]")
    live = DRIVER.parse_live(fe(), [page])
    opts = ("hcmethod=GET", "hcuri=/health", "hcexpr=hc-app", "hcinterval=3", "hcpasses=2")
    add = Change(
        "add", "app", "be4", state="ready", weight=2, address="198.18.35.104", port=8080,
        options=(*opts, "hcfails=4", "status=+H"),
    )  # fmt: skip
    new, setup = DRIVER.change_commands(fe(), live, [add])
    assert form(new) == {
        "b": "app", "nonce": NONCE, "b_nwrkr": "http://198.18.35.104:8080", "b_wyes": "1",
    }  # fmt: skip
    assert form(setup) == {
        "b": "app", "nonce": NONCE, "w": "http://198.18.35.104:8080", "w_wr": "be4",
        "w_lf": "2", "w_status_H": "1", "w_hm": "GET", "w_hu": "/health", "w_he": "hc-app",
        "w_hp": "2", "w_hf": "4", "w_hi": "3s", "w_status_N": "0", "w_status_D": "0",
    }  # fmt: skip


def test_add_without_a_free_slot_is_refused_before_anything_is_sent() -> None:
    live = DRIVER.parse_live(fe(), [PAGE])
    add = Change("add", "app", "be4", state="ready", weight=1, address="198.18.35.104", port=8080)
    with pytest.raises(ControlRefused, match="lb3: balancer app has no free member slot left"):
        DRIVER.change_commands(fe(), live, [add])


def test_a_member_removed_earlier_is_enabled_again_not_added_twice() -> None:
    live = DRIVER.parse_live(fe(), [PAGE])  # be3 is still listed (disabled after a removal)
    add = Change("add", "app", "be3", state="ready", weight=1, address="198.18.35.103", port=8080)
    (setup,) = DRIVER.change_commands(fe(), live, [add])
    assert form(setup)["w"] == "http://198.18.35.103:8080" and form(setup)["w_status_D"] == "0"


def test_remove_disables_the_member_apache_cannot_delete_it() -> None:
    live = DRIVER.parse_live(fe(), [PAGE])
    (post,) = DRIVER.change_commands(fe(), live, [Change("remove", "app", "be3")])
    assert (form(post)["w_status_N"], form(post)["w_status_D"]) == ("1", "1")


@pytest.mark.parametrize(
    ("code", "ok"), [("200", True), ("302", True), ("403", False), ("", False)]
)
def test_an_answer_other_than_200_or_302_is_refused(code: str, ok: bool) -> None:
    if ok:
        DRIVER.check_change(fe(), [], [code])
        return
    with pytest.raises(ControlRefused, match="lb3: balancer-manager refused: HTTP"):
        DRIVER.check_change(fe(), [], ["200", code])


def test_the_member_lines_read_back_and_the_balancer_keeps_slots_free() -> None:
    inv = parse(INV, "inventory.yaml")
    text = render_frontend(inv, inv.frontends[0])["/etc/apache2/apache2.conf"].content.decode()
    assert "growth=8" in text
    pools, masked = parse_members(text)
    be1, be2 = pools["app"].members
    assert (be1.name, be1.weight, be1.state) == ("be1", 4, "ready")
    assert (be2.state, "status=+H" in be2.options) == ("drain", True)
    assert "BalancerMember" not in masked
    assert DRIVER.parse_live(fe(), [""]) == Live(())
