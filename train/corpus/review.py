#!/usr/bin/env python3
"""One-off review of the draft corpus maps (data/corpus-maps/*.csv) into the reviewed tables
train/corpus/<dataset>.csv (path,native_label,ucs_catid). Run from the repository root:

    python3 train/corpus/review.py

Rules (applied in this order; see REVIEW.md for the counts):
  1. derive the native label: folder path + file stem without trailing numbers/variant markers
     (the same rule as sfxtag_train::corpus::native_label);
  2. drop whole folders that hold speech, music or UI jingles whose label says nothing about the
     sound (DROP_PREFIXES);
  3. drop generic stems that name a game event, not a sound (GENERIC_STEMS);
  4. apply the per-native-label fixes of obvious draft mistakes (FIXES; None = drop);
  5. drop rows whose CatID is empty, unknown to UCS v8.2.1 or ARCHIVED;
  6. drop every row of a native label that still maps to more than one CatID (conflict).
"""
import collections
import csv
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASETS = ["0ad", "hedgewars", "minetest", "redeclipse", "stk", "wesnoth"]

TRAILING = re.compile(r"(?:[ ._-]*\d+)+$")


def native_label(path: str) -> str:
    path = path.replace("\\", "/")
    folder, _, base = path.rpartition("/")
    stem = base.rsplit(".", 1)[0] if "." in base[1:] else base
    stripped = TRAILING.sub("", stem).rstrip(" ._-")
    if not stripped:
        stripped = stem
    return f"{folder}/{stripped}" if folder else stripped


DROP_PREFIXES = {
    # speech: unit acknowledgements / voice packs / announcer lines (what is said, not the sound)
    "0ad": ["voice/", "interface/select/building/", "interface/complete/building/"],
    "hedgewars": ["voices/"],
    "redeclipse": ["voice/", "announcer/", "interface/"],
    "stk": [],
    "minetest": [],
    "wesnoth": [],
}

# Stems that name a game event (or are numbered placeholders), not what is heard.
GENERIC_STEMS = {
    "notify", "power", "switch", "transit", "original", "theme", "theme_chip", "custom",
    "itemspawn", "itemuse", "regenerate", "catch", "critical", "damage", "respawn",
    "appear", "dark", "goo", "locked", "swap", "wee", "strike", "skip", "placed",
    "extratime", "suddendeath", "lowgravity", "hellish", "tardis", "yoohoo",
}

# Obvious mistakes of the keyword draft, keyed by (dataset, native label). None drops the label.
FIXES = {
    # "owl" matched inside other words
    ("stk", "bowling_roll"): None,
    ("stk", "bowling_shoot"): None,
    ("hedgewars", "hell_growl"): "CREAMnstr",
    # wrong vehicle / water / fire subcategories
    ("stk", "airplane_jetEngine"): "AEROJet",
    ("stk", "spaceship"): "SCIShip",
    ("stk", "skid"): "VEHSkid",
    ("stk", "fireworks_show"): "FRWKMisc",
    ("stk", "river_loop"): "WATRFlow",
    ("stk", "wooden_bridge"): None,  # a kart rolling over planks: not a wood impact
    ("redeclipse", "ambience/creek"): "WATRFlow",
    ("redeclipse", "ambience/river"): "WATRFlow",
    ("redeclipse", "ambience/water"): "WATRFlow",
    ("redeclipse", "ambience/lava"): "GEOLava",
    ("redeclipse", "ambience/lavarumble"): "GEOLava",
    ("redeclipse", "ambience/jumppad"): None,
    ("redeclipse", "ambience/switch"): None,
    ("redeclipse", "ambience/morph/outdoorsignal"): None,
    ("redeclipse", "sfx/underwater"): "WATRUndwtr",
    ("redeclipse", "sfx/error"): "UIAlert",
    ("redeclipse", "sfx/chat"): "UIBeep",
    # weapon reloads are gun mechanisms; grenade/mine beeps are not explosions
    ("redeclipse", "weapons/pistol/reload"): "GUNMech",
    ("redeclipse", "weapons/rifle/reload"): "GUNMech",
    ("redeclipse", "weapons/shotgun/reload"): "GUNMech",
    ("redeclipse", "weapons/smg/reload"): "GUNMech",
    ("redeclipse", "weapons/flamer/reload"): None,
    ("redeclipse", "weapons/rocket/reload"): None,
    ("redeclipse", "weapons/plasma/reload"): None,
    ("redeclipse", "weapons/grenade/beep"): None,
    ("redeclipse", "weapons/mine/beep"): None,
    ("redeclipse", "weapons/rocket/primary"): "WEAPMisc",
    ("redeclipse", "weapons/grenade/primary"): "WEAPMisc",
    ("redeclipse", "weapons/rifle/explode"): None,
    ("redeclipse", "weapons/shotgun/explode"): None,
    ("hedgewars", "shotgunreload"): "GUNMech",
    ("hedgewars", "sniperreload"): "GUNMech",
    ("hedgewars", "beep"): "UIBeep",
    ("hedgewars", "minetick"): "CLOCKTick",
    ("hedgewars", "flamethrower"): "FIREBurn",
    # humanoid hit/death cries are vocal efforts, as for the other wesnoth races
    ("wesnoth", "human-female-hit"): "VOXEfrt",
    ("wesnoth", "human-female-die"): "VOXEfrt",
    ("wesnoth", "human-old-hit"): "VOXEfrt",
    ("wesnoth", "human-old-die"): "VOXEfrt",
    ("wesnoth", "orc-small-hit"): "VOXEfrt",
    ("wesnoth", "orc-small-die"): "VOXEfrt",
    ("wesnoth", "ambient/ship"): "BOATShip",
    ("wesnoth", "ambient/wardrums"): None,  # music-like drums
    ("wesnoth", "axe"): "WEAPAxe",
    ("wesnoth", "cave-in"): "DESTRClpse",
    ("wesnoth", "rumble"): None,
    ("wesnoth", "squishy-hit"): "GOREFlsh",
    ("wesnoth", "water-blast"): "MAGElem",
    ("minetest", "default/sounds/default_dig_crumbly"): "DIRTMvmt",
    ("minetest", "default/sounds/player_damage"): "VOXEfrt",
}


def load_ucs():
    with open(os.path.join(ROOT, "data/ucs/ucs_v8.2.1.csv"), newline="") as f:
        return {r["CatID"]: r["Category"] for r in csv.DictReader(f)}


def review(dataset, rows, ucs):
    counts = collections.Counter()
    kept = []
    for r in rows:
        path = r["path"].strip()
        cat = r["draft_ucs_catid"].strip()
        label = native_label(path)
        stem = label.rsplit("/", 1)[-1]
        if any(path.startswith(p) for p in DROP_PREFIXES.get(dataset, [])):
            counts["speech/music/ui folder"] += 1
            continue
        if stem.lower() in GENERIC_STEMS:
            counts["generic name"] += 1
            continue
        if (dataset, label) in FIXES:
            fixed = FIXES[(dataset, label)]
            if fixed is None:
                counts["dropped by review"] += 1
                continue
            if fixed != cat:
                counts["fixed"] += 1
            cat = fixed
        if not cat:
            counts["no CatID"] += 1
            continue
        if cat not in ucs or ucs[cat] == "ARCHIVED":
            counts["invalid/archived CatID"] += 1
            continue
        kept.append((path, label, cat))
    by_label = collections.defaultdict(set)
    for _, label, cat in kept:
        by_label[label].add(cat)
    out = []
    for row in kept:
        if len(by_label[row[1]]) > 1:
            counts["conflicting label"] += 1
        else:
            out.append(row)
    counts["kept"] = len(out)
    return out, counts


def main():
    ucs = load_ucs()
    for fix in FIXES.values():
        assert fix is None or (fix in ucs and ucs[fix] != "ARCHIVED"), fix
    report = []
    for ds in DATASETS:
        with open(os.path.join(ROOT, "data/corpus-maps", f"{ds}.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        out, counts = review(ds, rows, ucs)
        out.sort()
        with open(os.path.join(ROOT, "train/corpus", f"{ds}.csv"), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["path", "native_label", "ucs_catid"])
            w.writerows(out)
        labels = {l for _, l, _ in out}
        cats = {c for _, _, c in out}
        report.append((ds, len(rows), counts, len(labels), len(cats)))
    for ds, n, counts, nl, nc in report:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != "kept")
        print(f"| {ds} | {n} | {counts['kept']} | {nl} | {nc} | {detail} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
