"""``safecity fleet plan``: cameras onto edge servers, what moved, one config per server."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def cmd_fleet_plan(args: argparse.Namespace) -> int:
    from .configs import load_template, write_configs
    from .inventory import load_inventory, load_servers
    from .plan import moved, plan, read_plan, write_plan

    t0 = time.perf_counter()
    inv, servers = load_inventory(Path(args.inventory)), load_servers(Path(args.servers))
    template = load_template(Path(args.template) if args.template else None)
    before = read_plan(Path(args.previous)) if args.previous else None
    t1 = time.perf_counter()
    p = plan(inv, servers)
    t2 = time.perf_counter()
    print(f"{len(inv)} cameras on {len(servers)} servers in {len(p.sites)} sites: read {t1 - t0:.1f} s, "
          f"planned {t2 - t1:.1f} s")  # fmt: skip
    print(
        f"{'site':<24} {'cameras':>8} {'servers':>7} {'demand':>9} {'capacity':>9}  utilisation min/mean/max"
    )
    for s in p.sites:
        lo, mean, hi = s.utilisation
        print(f"{s.site:<24} {s.cameras:>8} {s.servers:>7} {s.demand:>9.1f} {s.capacity:>9.1f}  "
              f"{lo:.2f} / {mean:.2f} / {hi:.2f}")  # fmt: skip
    summary: dict[str, Any] = {
        "cameras": len(inv),
        "servers": len(servers),
        "plan_seconds": round(t2 - t1, 3),
        "sites": [s.__dict__ for s in p.sites],
    }
    if before is not None:
        n_moved, n_known = moved(inv, servers, p, before)
        summary |= {"moved": n_moved, "known_before": n_known}
        share = 100 * n_moved / max(n_known, 1)
        print(f"moved: {n_moved} of {n_known} cameras in the previous plan ({share:.2f} %)")
    if args.kubernetes:
        if not args.site:
            raise ConfigError("--kubernetes needs --site: one StatefulSet (one overlay) per site")
        from .configs import write_kubernetes

        pods, moved_pods = write_kubernetes(Path(args.kubernetes), args.site, inv, servers, p, template)
        print(f"wrote the plan of site {args.site} ({pods} pods) to {args.kubernetes}", file=sys.stderr)
        if moved_pods:
            print(f"servers on another pod than before (moved down into the pods of servers gone): "
                  f"{', '.join(moved_pods)}", file=sys.stderr)  # fmt: skip
    if args.out:
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_plan(out / "plan.csv", inv, servers, p)
            written = 0 if args.no_configs else write_configs(out / "configs", inv, servers, p, template)
            t3 = time.perf_counter()
            summary["write_seconds"] = round(t3 - t2, 3)
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
        except OSError as err:
            raise ConfigError(
                f"--out {out}: cannot write there: {err.filename or out}: {err.strerror or err}"
            ) from None
        print(f"wrote {out / 'plan.csv'}, {written} configs under {out / 'configs'} in {t3 - t2:.1f} s",
              file=sys.stderr)  # fmt: skip
    return 0


def cmd_fleet_status(args: argparse.Namespace) -> int:
    from ..events.store import store_target
    from .plan import read_plan
    from .status import fleet_status, print_status

    plan = read_plan(Path(args.plan), "--plan") if args.plan else None
    rows = fleet_status(store_target(args.db), plan)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_status(rows)
    return 0


def add_parsers(sub: Any) -> None:
    f = sub.add_parser("fleet", help="many edge servers: place the camera inventory on them")
    fs = f.add_subparsers(dest="fleet_cmd", required=True)
    p = fs.add_parser("plan", help="assign cameras to edge servers (rendezvous hashing within sites)")
    p.add_argument(
        "inventory",
        help="cameras: CSV or YAML (camera_id, corporation, site, owner, lat, lon, url, codec, width, "
        "height, fps[, analytics_fps])",
    )
    p.add_argument("--servers", required=True, help="servers: CSV or YAML (server_id, site, capacity)")
    p.add_argument("--previous", metavar="PLAN_CSV", help="the plan before: report what moved")
    p.add_argument(
        "--out", metavar="DIR", help="write DIR/plan.csv, DIR/summary.json and DIR/configs/SERVER.yaml"
    )
    p.add_argument(
        "--template", metavar="YAML", help="the edge settings every config gets (models, sink, ...)"
    )
    p.add_argument("--no-configs", action="store_true", help="the plan only")
    p.add_argument(
        "--kubernetes",
        metavar="DIR",
        help="write one site's plan as the `plan` of a deploy/kubernetes overlay (ConfigMaps, replicas)",
    )
    p.add_argument("--site", help="the site --kubernetes writes")
    st = fs.add_parser("status", help="per site and server: cameras assigned vs up, rate, backlog, heartbeat")
    st.add_argument("--db", default="events.sqlite", help="the sink's store (the edges' heartbeats)")
    st.add_argument("--plan", metavar="PLAN_CSV", help="the plan: what each server was given, and its site")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_fleet_status)
    p.set_defaults(func=cmd_fleet_plan)
