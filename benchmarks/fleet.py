"""Planning a state's fleet: a synthetic inventory of 400,000 cameras in 17 corporations (sites within
each), their owners, resolutions, codecs and rates mixed as in a Safe City network, on 2,400 edge
servers sized to run at about 85 % of capacity. Measures reading the CSV files, planning, writing the
2,400 configs, and what adding and removing one server of the largest site moves (the ideal: the
cameras the new server takes, about 1/N of that site; or the removed server's own), with each site's
utilisation spread. Writes JSON and Markdown.

    safecity bench fleet [--cameras 400000 --servers 2400]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.fleet.configs import write_configs
from pipeline.fleet.inventory import Servers, load_inventory, load_servers
from pipeline.fleet.plan import Plan, plan

CORPORATIONS = [
    "mumbai", "pune", "nagpur", "thane", "nashik", "aurangabad", "solapur", "kolhapur", "amravati",
    "navi-mumbai", "kalyan", "vasai", "pimpri", "sangli", "jalgaon", "akola", "latur",
]  # fmt: skip
OWNERS = (("public", 0.55), ("petrol_pump", 0.08), ("bank", 0.12), ("shop", 0.15), ("residential", 0.10))
HEADER = "camera_id corporation site owner lat lon url codec width height fps analytics_fps".split()
URL = "rtsp://{camera_id}.cams.{corporation}.example/stream1"
RESOLUTIONS = (((1920, 1080), 0.6), ((1280, 720), 0.25), ((2560, 1440), 0.1), ((3840, 2160), 0.05))


def inventory(path: Path, cameras: int, seed: int = 7) -> None:
    """A CSV inventory: corporations sized unevenly (a metropolis and towns), 1-4 sites each."""
    rng = np.random.default_rng(seed)
    share = rng.pareto(1.2, len(CORPORATIONS)) + 0.3
    per_corp = np.floor(share / share.sum() * cameras).astype(int)
    per_corp[0] += cameras - per_corp.sum()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for corp, n in zip(CORPORATIONS, per_corp, strict=True):
            sites = [f"{corp}-{k}" for k in range(1 + min(3, n // 20000))]
            owner = rng.choice([o for o, _ in OWNERS], n, p=[p for _, p in OWNERS])
            res = rng.choice(len(RESOLUTIONS), n, p=[p for _, p in RESOLUTIONS])
            codec = rng.choice(["h264", "hevc"], n, p=[0.7, 0.3])
            fps = rng.choice([15, 25, 30], n, p=[0.2, 0.5, 0.3])
            afps = rng.choice([2, 5, 10], n, p=[0.2, 0.7, 0.1])
            lat, lon = 18 + rng.random(n) * 3, 73 + rng.random(n) * 4
            for i in range(n):
                (wd, ht), _ = RESOLUTIONS[res[i]]
                w.writerow([f"{corp}-{i:06d}", corp, sites[i % len(sites)], owner[i], f"{lat[i]:.5f}",
                            f"{lon[i]:.5f}", URL, codec[i], wd, ht, fps[i], afps[i]])  # fmt: skip


def servers(path: Path, inventory_csv: Path, total: int, utilisation: float = 0.85) -> None:
    """``total`` servers spread over the sites by their demand, each of capacity
    demand / (servers x utilisation)."""
    inv = load_inventory(inventory_csv)
    sites = sorted(set(inv.site))
    demand = {s: 0.0 for s in sites}
    for s, wt in zip(inv.site, inv.weight, strict=True):
        demand[s] += wt
    total_demand = sum(demand.values())
    capacity = max(round(total_demand / (total * utilisation)), 1)
    counts = {s: max(1, int(np.ceil(demand[s] / (capacity * utilisation)))) for s in sites}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["server_id", "site", "capacity"])
        for s in sites:
            for k in range(counts[s]):
                w.writerow([f"{s}-gpu{k:03d}", s, capacity])


def placed(p: Plan, srv: Servers) -> np.ndarray:
    """Each camera's server id."""
    return np.asarray(srv.server_id)[p.server]


def run(cameras: int, total_servers: int, work: Path) -> dict[str, Any]:
    inv_csv, srv_csv = work / "inventory.csv", work / "servers.csv"
    t = time.perf_counter()
    inventory(inv_csv, cameras)
    servers(srv_csv, inv_csv, total_servers)
    made = time.perf_counter() - t
    t = time.perf_counter()
    inv, srv = load_inventory(inv_csv), load_servers(srv_csv)
    read = time.perf_counter() - t
    t = time.perf_counter()
    base = plan(inv, srv)
    planned = time.perf_counter() - t
    t = time.perf_counter()
    write_configs(
        work / "configs", inv, srv, base, {"device": "auto", "sink": {"endpoint": "tcp://iccc:5555"}}
    )
    written = time.perf_counter() - t
    big = max(base.sites, key=lambda s: s.cameras)
    in_big = [i for i, s in enumerate(srv.site) if s == big.site]
    added = Servers([*srv.server_id, f"{big.site}-gpu-new"], [*srv.site, big.site],
                    np.r_[srv.capacity, srv.capacity[in_big[0]]])  # fmt: skip
    t = time.perf_counter()
    with_added = plan(inv, added)
    replan = time.perf_counter() - t
    gone = in_big[len(in_big) // 2]
    keep = [i for i in range(len(srv)) if i != gone]
    removed = Servers([srv.server_id[i] for i in keep], [srv.site[i] for i in keep], srv.capacity[keep])
    with_removed = plan(inv, removed)
    before = placed(base, srv)
    moved_add = placed(with_added, added) != before
    moved_remove = int((placed(with_removed, removed) != before).sum())
    new_took = int((with_added.server == len(srv)).sum())
    on_gone = int((base.server == gone).sum())
    other_sites_moved = int((moved_add & (np.asarray(inv.site) != big.site)).sum())
    utils = np.asarray([s.utilisation for s in base.sites])
    return {
        "cameras": len(inv),
        "servers": len(srv),
        "sites": len(base.sites),
        "capacity_per_server": float(srv.capacity[0]),
        "seconds": {
            "generate": round(made, 2),
            "read": round(read, 2),
            "plan": round(planned, 2),
            "write_configs": round(written, 2),
            "replan": round(replan, 2),
        },  # fmt: skip
        "utilisation": {
            "min": float(utils[:, 0].min()),
            "mean": float(utils[:, 1].mean()),
            "max": float(utils[:, 2].max()),
        },  # fmt: skip
        "largest_site": {"site": big.site, "cameras": big.cameras, "servers": big.servers},
        "add_one": {
            "moved": int(moved_add.sum()),
            "new_server_took": new_took,
            "ideal": round(big.cameras / (big.servers + 1)),
            "other_sites_moved": other_sites_moved,
        },
        "remove_one": {"moved": moved_remove, "on_removed_server": on_gone},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="safecity bench fleet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=400_000)
    ap.add_argument("--servers", type=int, default=2_400)
    ap.add_argument("--out", default="benchmarks/results/fleet")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        r = run(args.cameras, args.servers, Path(tmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(r, indent=2))
    s, a, rm, u = r["seconds"], r["add_one"], r["remove_one"], r["utilisation"]
    md = [
        f"# Fleet plan: {r['cameras']} cameras, {r['servers']} servers, {r['sites']} sites",
        "",
        f"- read the CSVs {s['read']} s, plan {s['plan']} s, write the {r['servers']} configs "
        f"{s['write_configs']} s, plan again (one server added) {s['replan']} s",
        f"- utilisation per server: min {u['min']:.2f}, mean {u['mean']:.2f}, max {u['max']:.2f} "
        f"(capacity {r['capacity_per_server']:g} camera-equivalents)",
        f"- add one server to {r['largest_site']['site']} ({r['largest_site']['cameras']} cameras on "
        f"{r['largest_site']['servers']} servers): {a['moved']} cameras moved, the new server took "
        f"{a['new_server_took']} (ideal about {a['ideal']}); other sites: {a['other_sites_moved']} moved",
        f"- remove one server there: {rm['moved']} cameras moved; {rm['on_removed_server']} were on it",
    ]
    (out / "fleet.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
