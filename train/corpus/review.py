#!/usr/bin/env python3
"""One-off review of the draft corpus maps (data/corpus-maps/*.csv) into the reviewed tables
train/corpus/<dataset>.csv (path,native_label,ucs_catid). Run from the repository root:

    python3 train/corpus/review.py

Rules (applied in this order; see REVIEW.md for the counts):
  1. derive the native label: folder path + file stem without trailing numbers/variant markers
     (the same rule as sfxtag_train::corpus::native_label);
  2. keep the speech folders (SPEECH_PREFIXES) as VOICES, whatever the draft says: spoken lines
     -> VOXMale / VOXFem when the path names the speaker's sex, else VOXMisc; efforts, pain and
     death cries -> VOXEfrt; screams -> VOXScrm; laughs -> VOXLaff (voice_catid); files there that
     are not speech (a dog, sung or robot voice packs, alert tones) are dropped; at most
     VOICE_CAP files per dataset, spread over the speakers (select_voices);
     drop whole folders that hold music or UI jingles whose label says nothing about the sound
     (DROP_PREFIXES);
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
    # composite UI jingles ("building" selected/completed) and interface sounds
    "0ad": ["interface/select/building/", "interface/complete/building/"],
    "hedgewars": [],
    "redeclipse": ["interface/"],
    "stk": [],
    "minetest": [],
    "wesnoth": [],
}

# Speech folders: unit acknowledgements, voice packs, taunts and announcer lines. Kept as VOICES
# (they train the speech detector that the privacy filter relies on), capped per dataset.
SPEECH_PREFIXES = {
    "0ad": ["voice/"],
    "hedgewars": ["voices/"],
    "redeclipse": ["voice/", "announcer/"],
}
VOICE_CAP = 150

# Files in the speech folders that are not speech: dropped (prefixes, then lower-case stems).
NOT_SPEECH_PREFIXES = [
    "voice/global/",  # 0ad civ_dog_bark / civ_dog_move: a dog, not a voice
    "voices/Singer/",  # hedgewars: sung lines (music)
    "voices/Robot/",  # hedgewars: robot voice (ROBOTS, not VOICES)
]
NOT_SPEECH_STEMS = {
    "pzap",  # redeclipse voice/pzap: a zap, drafted ELECSprk
    "alert", "warning",  # redeclipse announcer: may be alert tones, not words
    "poisoncough",  # hedgewars: a cough (HUMAN), not speech
}
# Stems (lower case, native label) of vocal efforts / pain / death cries, laughs and screams.
EFFORT_STEMS = {"argh", "ooff", "ow", "ouch", "jump", "firepunch", "poisonmoan"}
LAUGH_STEMS = {"haha", "laugh"}
SCREAM_STEMS = {"scream"}
FEMALE = re.compile(r"(?:^|[/_.-])(?:female|woman|women|girl)(?:[/_.-]|$)", re.I)
MALE = re.compile(r"(?:^|[/_.-])(?:male|man|men|boy)(?:[/_.-]|$)", re.I)


def voice_catid(path, label):
    """The VOICES CatID of a file in a speech folder, or None when it is not speech."""
    stem = label.rsplit("/", 1)[-1].lower()
    if any(path.startswith(p) for p in NOT_SPEECH_PREFIXES) or stem in NOT_SPEECH_STEMS:
        return None
    if stem in EFFORT_STEMS:
        return "VOXEfrt"
    if stem in LAUGH_STEMS:
        return "VOXLaff"
    if stem in SCREAM_STEMS:
        return "VOXScrm"
    if FEMALE.search(path):
        return "VOXFem"
    if MALE.search(path):
        return "VOXMale"
    return "VOXMisc"


def speaker(path):
    """The speaker of a voice file: its folder, plus the sex when the file name says it."""
    folder, _, base = path.rpartition("/")
    sex = "female" if FEMALE.search(base) else "male" if MALE.search(base) else ""
    return (folder, sex)


def select_voices(rows, cap=VOICE_CAP):
    """At most `cap` of the voice rows (path, label, cat), deterministically and spread over the
    speakers: each speaker gets a fair share of the cap (smallest speakers first, what they
    cannot use goes to the others), taken as every n-th of its files sorted by path, the n-th
    steps shifted by the speaker's index so that the speakers do not all keep the same lines."""
    if len(rows) <= cap:
        return sorted(rows)
    groups = collections.defaultdict(list)
    for r in sorted(rows):
        groups[speaker(r[0])].append(r)
    keys = sorted(groups)
    quota = {}
    left = cap
    by_size = sorted(keys, key=lambda k: (len(groups[k]), k))
    for i, k in enumerate(by_size):
        quota[k] = min(len(groups[k]), left // (len(by_size) - i))
        left -= quota[k]
    for k in keys:  # hand out what the integer division left over, in speaker order
        if left and quota[k] < len(groups[k]):
            quota[k] += 1
            left -= 1
    out = []
    for g, k in enumerate(keys):
        files, q = groups[k], quota[k]
        n = len(files)
        out.extend(files[(i * n // q + g) % n] for i in range(q))
    return sorted(out)

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
    # UCS files chickens under BIRDS (BIRDFowl), not farm animals
    ("0ad", "actor/fauna/animal/chicken"): "BIRDFowl",
    # an axe chopping a tree: UCS lists "Chop" under WOODImpt, where the other sources'
    # woodcutting is (openclonk Tree.ocg/Chop, widelands woodcutting, minetest dig_choppy)
    ("0ad", "resource/lumbering/lumber_tree"): "WOODImpt",
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
    voices = []
    for r in rows:
        path = r["path"].strip()
        cat = r["draft_ucs_catid"].strip()
        label = native_label(path)
        stem = label.rsplit("/", 1)[-1]
        if any(path.startswith(p) for p in SPEECH_PREFIXES.get(dataset, [])):
            vcat = voice_catid(path, label)
            if vcat is None:
                counts["not speech in speech folder"] += 1
            else:
                voices.append((path, label, vcat))
            continue
        if any(path.startswith(p) for p in DROP_PREFIXES.get(dataset, [])):
            counts["music/ui folder"] += 1
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
    chosen = select_voices(voices)
    counts["speech over cap"] += len(voices) - len(chosen)
    counts["VOICES"] = len(chosen)
    kept.extend(chosen)
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
    for vox in ("VOXEfrt", "VOXLaff", "VOXScrm", "VOXFem", "VOXMale", "VOXMisc"):
        assert ucs.get(vox) == "VOICES", vox
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
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k not in ("kept", "VOICES") and v)
        print(f"| {ds} | {n} | {counts['kept']} | {counts['VOICES']} | {nl} | {nc} | {detail} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
