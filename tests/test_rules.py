"""The rules as one family: the registry against the config, a case that must not fire for every
threshold, confirmation in seconds, roles checked at load, and person-down as a change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.accuracy.scenarios import LIBRARY, run_scenario
from pipeline.analytics.memory import TrackMemory
from pipeline.analytics.rules import RULES, check_roles
from pipeline.config import RulesConfig, parse_config
from pipeline.detect.roles import common_label_roles
from pipeline.errors import ConfigError
from pipeline.types import Track

SCENARIOS = LIBRARY


def scenario(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())


def starts(
    data: dict[str, Any], rules: dict[str, Any] | None = None, fps: float = 5
) -> list[tuple[str, float]]:
    return [
        (i.type, round(i.emitted_at, 2)) for i in run_scenario(data, rules, fps=fps) if i.status == "start"
    ]


def test_registry_pairs_every_rule_with_its_config_section() -> None:
    sections = {k: f.annotation for k, f in RulesConfig.model_fields.items() if k != "fallen_aspect"}
    assert {r.type: r.config for r in RULES} == sections
    assert len({r.type for r in RULES}) == len(RULES)


# Each positive scenario, with one threshold moved just past what the scenario shows: must not fire.
# The collision cases keep the car stopped for less than stopped_seconds (only the collision branch).
ONLY_COLLISION = {"stopped_seconds": 20}
THRESHOLDS = [
    ("stray_cow_on_road", {}, {"stray_animal": {"dwell_seconds": 21}}),
    ("vendor_encroaching_footpath", {}, {"encroachment": {"dwell_seconds": 21}}),
    ("vendor_encroaching_footpath", {}, {"encroachment": {"stationary_sizes": 0.001}}),
    ("vendor_encroaching_footpath", {}, {"encroachment": {"stationary_seconds": 25}}),
    ("collision", {"accident": ONLY_COLLISION}, {"accident": {**ONLY_COLLISION, "overlap_iou": 0.9}}),
    ("collision", {"accident": ONLY_COLLISION}, {"accident": {**ONLY_COLLISION, "moving_sizes": 6}}),
    ("collision", {"accident": ONLY_COLLISION}, {"accident": {**ONLY_COLLISION, "window_seconds": 0.1}}),
    ("collision", {"accident": ONLY_COLLISION}, {"accident": {**ONLY_COLLISION, "stop_seconds": 9}}),
    ("sudden_stop_on_road", {}, {"accident": {"stopped_seconds": 9}}),
    ("sudden_stop_on_road", {}, {"accident": {"moving_sizes": 3}}),
    ("sudden_stop_on_road", {}, {"accident": {"stopped_sizes": 0.0001}}),
    ("person_down_on_road", {}, {"accident": {"fallen_seconds": 10}}),
    ("person_down_on_road", {}, {"fallen_aspect": 5.0, "accident": {"confirm_seconds": 9}}),
    ("person_falls_id_switch", {}, {"fallen_aspect": 5.0}),
    ("fight", {}, {"assault": {"relative_speed_heights_s": 5}}),
    ("fight", {}, {"assault": {"distance_heights": 0.2}}),
    ("fight", {}, {"assault": {"sustain_seconds": 11}}),
    ("knocked_down", {}, {"assault": {"down_seconds": 11}}),
    ("knocked_down", {}, {"assault": {"distance_heights": 0.1}}),
    ("bag_snatch", {}, {"theft": {"owner_seconds": 11}}),
    ("bag_snatch", {}, {"theft": {"owner_distance_heights": 0.1}}),
    ("bag_snatch", {}, {"theft": {"release_distance_heights": 20}}),
    ("bag_snatch", {}, {"theft": {"fast_speed_heights_s": 3}}),
    ("removed_from_protected_zone", {}, {"theft": {"protected_seconds": 12}}),
]


@pytest.mark.parametrize(
    ("name", "base", "moved"), THRESHOLDS, ids=[f"{n}-{k}" for k, (n, *_) in enumerate(THRESHOLDS)]
)
def test_threshold_past_the_scenario_does_not_fire(
    name: str, base: dict[str, Any], moved: dict[str, Any]
) -> None:
    data = scenario(name)
    assert starts(data, base), f"{name} fires with {base or 'its own settings'}"
    assert starts(data, moved) == []


# Every field of every rule's section and its unit: none is in pixels (a threshold in pixels means
# something else at every resolution and distance from the camera).
UNITS = {
    "enabled": "on/off",
    "severity": "level",
    "schedule": "local time ranges",
    "roles": "roles",
    "confirm_seconds": "media seconds",
    "clear_seconds": "media seconds",
    "update_seconds": "media seconds",
    "cooldown_seconds": "media seconds",
    "dwell_seconds": "media seconds",
    "stationary_sizes": "the object's own sizes",
    "stationary_seconds": "media seconds",
    "overlap_iou": "ratio of box areas",
    "window_seconds": "media seconds",
    "moving_sizes": "the object's own sizes",
    "stopped_sizes": "the object's own sizes",
    "stop_seconds": "media seconds",
    "stopped_seconds": "media seconds",
    "fallen_seconds": "media seconds",
    "distance_heights": "the people's own heights",
    "relative_speed_heights_s": "the people's own heights per second",
    "sustain_seconds": "media seconds",
    "down_seconds": "media seconds",
    "owner_seconds": "media seconds",
    "owner_distance_heights": "the person's own heights",
    "release_distance_heights": "the owner's own heights",
    "fast_speed_heights_s": "the person's own heights per second",
    "protected_seconds": "media seconds",
}


def test_every_rule_field_has_a_unit_and_none_is_in_pixels() -> None:
    listed = {(r.type, f): UNITS.get(f) for r in RULES for f in r.config.model_fields}
    assert all(listed.values()), [k for k, v in listed.items() if not v]
    assert not [k for k, v in listed.items() if "pixel" in str(v) or "px" in k[1]]
    shared = RulesConfig.model_fields["fallen_aspect"]  # width over height: a ratio
    assert shared.annotation is float and "px" not in (shared.description or "")


@pytest.mark.parametrize(
    ("section", "old", "new"),
    [
        ("encroachment", "stationary_speed_px_s", "stationary_sizes"),
        ("accident", "moving_speed_px_s", "moving_sizes"),
        ("accident", "stopped_speed_px_s", "stopped_sizes"),
    ],
)
def test_a_pixel_threshold_is_refused_with_its_replacement_named(section: str, old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=rf"rules\.{section}: .*{old} was replaced: .*{new}"):
        parse_config(
            {
                "cameras": [{"id": "c", "source": "x.mp4"}],
                "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
                "rules": {section: {old: 40}},
            }
        )


def test_every_threshold_has_a_case() -> None:
    """Every numeric threshold of every rule is moved by some case above (lifecycle timing aside)."""
    lifecycle = {"confirm_seconds", "clear_seconds", "update_seconds", "cooldown_seconds"}
    moved = {(rule, k) for _, _, r in THRESHOLDS for rule, v in r.items() if isinstance(v, dict) for k in v}
    for r in RULES:
        for field, info in r.config.model_fields.items():
            if info.annotation in (float, int) and field not in lifecycle:
                assert (r.type, field) in moved, f"no case moves rules.{r.type}.{field}"


@pytest.mark.parametrize(
    "name", ["stray_cow_on_road", "collision", "fight", "bag_snatch", "person_down_on_road"]
)
def test_confirmation_takes_the_same_time_at_any_analytics_rate(name: str) -> None:
    data = scenario(name)
    at5, at10 = starts(data, fps=5), starts(data, fps=10)
    assert [k for k, _ in at5] == [k for k, _ in at10]
    for (_, a), (_, b) in zip(at5, at10, strict=True):
        assert abs(a - b) <= 0.2 + 1e-6, (at5, at10)  # within one frame at 5 fps


def test_confirm_frames_is_refused_with_its_replacement_named() -> None:
    with pytest.raises(ConfigError, match="confirm_frames was replaced by confirm_seconds"):
        parse_config(
            {
                "cameras": [{"id": "c", "source": "x.mp4"}],
                "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
                "rules": {"stray_animal": {"confirm_frames": 3}},
            }
        )


PROVIDED = {"person", "vehicle", "two_wheeler", "animal", "bag", "fallen_person"}


def test_a_rule_role_no_model_provides_is_an_error() -> None:
    rules = RulesConfig.model_validate({"stray_animal": {"roles": ["animals"]}})
    with pytest.raises(ConfigError, match=r"rules.stray_animal.roles names 'animals', which no loaded model"):
        check_roles(rules, PROVIDED)
    check_roles(RulesConfig.model_validate({"stray_animal": {"roles": ["animal"]}}), PROVIDED)
    # the fall model alone provides no animal: the default stray-animal rule only warns
    check_roles(RulesConfig(), {"person", "fallen_person"})
    with pytest.raises(ConfigError, match="encroachment.roles names 'vehicle'"):
        check_roles(RulesConfig.model_validate({"encroachment": {"roles": ["vehicle"]}}), {"person"})


def test_a_role_name_that_is_not_a_word_is_refused_at_parse() -> None:
    with pytest.raises(ConfigError, match=r"rules.encroachment.roles.0"):
        parse_config(
            {
                "cameras": [{"id": "c", "source": "x.mp4"}],
                "model": {"backend": "scripted", "scripted_detections": "x.jsonl"},
                "rules": {"encroachment": {"roles": ["Person Vehicle"]}},
            }
        )


def _box(cx: float, by: float, w: float, h: float) -> np.ndarray:
    return np.array([cx - w / 2, by - h, cx + w / 2, by], np.float32)


def test_went_down_needs_an_upright_sighting_before() -> None:
    mem = TrackMemory(common_label_roles())
    # track 1: lying from the first frame; track 2: upright, then lying (the posture model's verdict)
    for k in range(20):
        t = k * 0.2
        down2 = k >= 10
        infos = mem.update(
            [
                Track(1, _box(200, 500, 170, 60), 0.8, 0, "person"),
                Track(2, _box(600, 500, 60, 170), 0.8, 0, "person", down=down2),
            ],
            t,
        )
    lying, fell = infos
    assert lying.down and lying.down_since is None
    assert fell.down and fell.down_since == pytest.approx(2.0)
    # getting up clears it
    (_, up) = mem.update(
        [
            Track(1, _box(200, 500, 170, 60), 0.8, 0, "person"),
            Track(2, _box(600, 500, 60, 170), 0.8, 0, "person", down=False),
        ],
        4.2,
    )
    assert not up.down and up.down_since is None and up.upright_at == pytest.approx(4.2)


def test_a_config_with_a_camera_naming_an_unknown_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="camera c: models names 'coco', expected some of"):
        parse_config(
            {
                "cameras": [{"id": "c", "source": "x.mp4", "models": ["coco"]}],
                "models": [{"name": "yolov3-tiny-coco"}, {"name": "fall-yolov8"}],
            }
        )


def test_tracker_thresholds_are_checked_against_the_models() -> None:
    base = {"cameras": [{"id": "c", "source": "x.mp4"}]}
    parse_config({**base, "models": [{"name": "fall-yolov8", "conf_threshold": 0.4}]})
    with pytest.raises(
        ConfigError, match=r"model fall-yolov8: conf_threshold 0.5 is not below tracker.high_threshold"
    ):
        parse_config({**base, "models": [{"name": "fall-yolov8", "conf_threshold": 0.5}]})
    parse_config(
        {
            **base,
            "models": [{"name": "fall-yolov8", "conf_threshold": 0.5}],
            "tracker": {"high_threshold": 0.6},
        }
    )


def test_default_models_are_the_coco_and_fall_detectors() -> None:
    cfg = parse_config({"cameras": [{"id": "c", "source": "x.mp4"}]})
    assert [m.key for m in cfg.models] == ["yolov3-tiny-coco", "fall-yolov8"]
    with pytest.raises(ConfigError, match="roles moved into each model"):
        parse_config({"cameras": [{"id": "c", "source": "x.mp4"}], "roles": {"person": ["person"]}})


def test_one_frame_that_reads_upright_does_not_make_a_fall() -> None:
    """A heap whose box reads upright for one frame (or a verdict that flickers once) never stood."""
    mem = TrackMemory(common_label_roles())
    for k in range(30):
        t = k * 0.2
        box = _box(300, 500, 40, 60) if k == 4 else _box(300, 500, 90, 40)  # one frame taller than wide
        (heap,) = mem.update([Track(1, box, 0.8, 0, "person")], t)
    assert heap.down and not heap.stood and heap.down_since is None


def test_a_continuation_never_takes_a_track_this_frame_shows() -> None:
    mem = TrackMemory(common_label_roles())
    standing = _box(600, 500, 60, 170)
    for k in range(10):  # person 1 stands, then falls at 1.0 s
        mem.update([Track(1, standing if k < 5 else _box(640, 500, 170, 60), 0.8, 0, "person")], k * 0.2)
    # 2.0 s: person 1 missed for a frame, a helper (track 2) appears next to where it lay
    (helper,) = mem.update([Track(2, _box(660, 500, 60, 170), 0.8, 0, "person")], 2.0)
    assert helper.continues == 1
    # 2.2 s: person 1 is back (listed first), the helper too: neither takes the other over
    back, helper = mem.update(
        [
            Track(1, _box(640, 500, 170, 60), 0.8, 0, "person"),
            Track(2, _box(660, 500, 60, 170), 0.8, 0, "person"),
        ],
        2.2,
    )
    assert back.continues is None and back.down_since == pytest.approx(1.0)
    assert 2 in mem.tracks and len(helper.history) > 1
    # seen side by side, the two are two objects: the helper is no continuation of person 1 (timers
    # keyed by the object's origin keep them apart)
    assert helper.continues is None and helper.origin == 2 and back.origin == 1
    # a third track near person 1 the next time it is missed does continue it (once)
    (other,) = mem.update([Track(3, _box(640, 500, 170, 60), 0.8, 0, "person")], 2.4)
    assert other.continues == 1 and other.origin == 1
    (fourth,) = mem.update([Track(4, _box(640, 500, 170, 60), 0.8, 0, "person")], 2.6)
    assert fourth.continues != 1


def _cfg(tmp_path: Path, **kw: Any) -> Any:
    data = {
        "cameras": [{"id": "c", "source": "x.mp4"}],
        "sink": {"insecure": True, "outbox": str(tmp_path / "o.sqlite")},
        **kw,
    }
    return parse_config(data)


def test_model_names_and_given_roles_are_checked_before_anything_opens(tmp_path: Path) -> None:
    from pipeline.analytics.rules import check_loaded_roles
    from pipeline.runner import Runner

    cfg = _cfg(tmp_path, models=[{"name": "yolov3-tiny-coco"}, {"name": "fall-yolo8"}])
    with pytest.raises(
        ConfigError, match=r"models\[fall-yolo8\].name: 'fall-yolo8' is not in the manifest .*known: "
    ):
        Runner(cfg)
    assert not (tmp_path / "o.sqlite").exists()  # refused before the outbox was opened
    cfg = _cfg(tmp_path, models=[{"name": "yolov3-tiny-coco", "roles": {"vehicel": ["car"]}}])
    with pytest.raises(
        ConfigError,
        match=r"models\[yolov3-tiny-coco\].roles: no rule reads role 'vehicel' \(did you mean 'vehicle'\?\)",
    ):
        check_loaded_roles(cfg, {"yolov3-tiny-coco": {"vehicel": ["car"]}})
    with pytest.raises(ConfigError, match=r"rules.encroachment.roles"):
        _cfg(tmp_path, rules={"encroachment": {"roles": []}})


def test_a_bad_scripted_file_names_its_line(tmp_path: Path) -> None:
    from pipeline.detect.scripted import ScriptedDetector
    from pipeline.errors import ModelError

    f = tmp_path / "s.jsonl"
    f.write_text('{"names": ["person"]}\n{"camera": "c", "t": 0, "boxes": []}\n{"camera": "c" "t": 1}\n')
    with pytest.raises(ModelError, match=r"s.jsonl:3: not a JSON line"):
        ScriptedDetector(f)
    f.write_text('{"names": ["person"]}\n{"t": 0, "boxes": []}\n')
    with pytest.raises(ModelError, match=r"s.jsonl:2: expected \{\"camera\""):
        ScriptedDetector(f)
