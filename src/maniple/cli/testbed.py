"""CLI commands of the real-link testbed: `testbed up`, `testbed down`, `testbed status`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

testbed_app = typer.Typer(
    help="A testbed of real links (Linux, root): each emulated board a Ray node in its own "
    "network namespace, behind a veth shaped with tc to its link / the time dilation. "
    "`maniple spatial ... --testbed` runs over it.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (alone on stdout).")]


def register(app: typer.Typer) -> None:
    """Add `testbed` and its commands to the main app."""
    from maniple.cli.app import console, print_json

    app.add_typer(testbed_app, name="testbed")

    @testbed_app.command("up")
    def up_command(
        boards: Annotated[
            str, typer.Option(help="The boards, as for --emulate: e.g. 6xfirefly-rk3399.")
        ],
        link_mbps: Annotated[
            float, typer.Option(help="Each board's link, Mbit/s (shaped to it / dilation).")
        ] = 100.0,
        dilation: Annotated[
            float | None,
            typer.Option(
                help="Time dilation of compute and links (default: the one `maniple spatial` "
                "picks for these boards on this host)."
            ),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Bring a testbed up (root, `ip` and `tc` needed).

        One network namespace per board and one for the coordinator, each with a veth to a
        bridge, shaped both ways with tc to the link / dilation; one Ray node per board
        (its resource names the board), the coordinator as the head node.
        """
        from maniple.cluster import testbed

        state = testbed.up(boards, link_mbps=link_mbps, dilation=dilation)
        if json_out:
            print_json(state.to_dict())
            return
        p = state.plan
        console.print(
            f"testbed up: {len(p.boards)} boards on {p.subnet}, coordinator {p.gcs_address}, "
            f"links {p.link_mbps:g} Mbit/s shaped to {p.board_shaping.link().rate_mbps:g} "
            f"(dilation {p.dilation:g}); run `maniple spatial --network vgg-16 --testbed`",
            highlight=False,
        )
        for b in p.boards:
            console.print(f"  {b.name}: {b.address} in {b.namespace}", highlight=False)

    @testbed_app.command("down")
    def down_command(json_out: JsonOpt = False) -> None:
        """Remove everything a testbed made.

        Its Ray processes, namespaces (with their veths, bridge and shapers), Ray temp dir
        and record; also after a crash and without the record (found by the name prefix).
        """
        from maniple.cluster import testbed

        report = testbed.down()
        if json_out:
            print_json(report)
            return
        console.print(_down_line(report), highlight=False)

    @testbed_app.command("status")
    def status_command(json_out: JsonOpt = False) -> None:
        """Show what exists of a testbed.

        Its record, the namespaces with their processes, and each link's byte counters.
        """
        from maniple.cluster import testbed

        doc = testbed.status()
        if json_out:
            print_json(doc)
            return
        for line in _status_lines(doc):
            console.print(line, highlight=False, markup=False)


def _down_line(report: dict[str, Any]) -> str:
    removed = report["namespaces_removed"]
    left = report["left"]
    line = f"removed {len(removed)} namespaces, stopped {report['processes_stopped']} processes" + (
        ", deleted the record" if report["record_removed"] else ""
    )
    if left["namespaces"] or left["processes"]:
        line += f"; still there: {left}"
    for problem in report["problems"]:
        line += f"; {problem}"
    return line if removed or report["record_removed"] else "no testbed here: nothing to remove"


def _status_lines(doc: dict[str, Any]) -> list[str]:
    record = doc.get("record")
    if record is None and not doc["namespaces"]:
        return [doc.get("record_error") or "no testbed (`maniple testbed up --boards ...`)"]
    lines = []
    if record is not None:
        lines.append(
            f"testbed {'up' if doc['up'] else record['status'] + ' (incomplete)'}: "
            f"{record['boards_text']} on {record['subnet']}, links {record['link_mbps']:g} "
            f"Mbit/s at dilation {record['dilation']:g}"
        )
    if doc.get("leftovers"):
        lines.append("leftovers of a testbed: `maniple testbed down` removes them")
    for ns, procs in doc["namespaces"].items():
        lines.append(f"  {ns}: {procs} processes")
    if doc.get("links_note"):
        lines.append(f"  ({doc['links_note']})")
    for link, c in (doc.get("links") or {}).items():
        lines.append(
            f"  link {link}: sent {c['sent_bytes']:,} B, received {c['received_bytes']:,} B"
        )
    return lines
