"""The reliability suite's bad inputs: one :class:`Case` per command line a user might get
wrong, with the words its one-line error must contain.

``{name}`` in an argument is a file :func:`make_files` makes: ``{out}`` a fresh output folder,
``{run}`` a finished reconstruct run, the others broken or foreign files.
``tests/test_reliability.py`` runs the list in-process; ``benchmarks/reliability.py`` runs it
through the installed command and writes the table in docs/reliability.md.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

GEN = ("generate", "a red cube", "--quiet", "--no-score", "--out", "{out}")
"""A generate command line that is right but for what a case adds."""
REC = ("reconstruct", "--asset", "a red cube", "--quiet", "--out", "{out}")
EDIT = ("edit", "{run}", "a blue cube")
"""An edit of the finished run, but for its options and ``--out``."""
SCENE = ("handles", "--scene", "a red cube next to a blue sphere", "--object")
"""A handles command on a world scene, up to the object's index."""
MOVE = ("--translate", "0.1", "0", "0")
OUT = ("--out", "{out}")
BLEND = ("blend", "--head", "203", "--reference-head", "217")
"""A blend of two world heads, but for its region and ``--out``."""


def photo(image: str) -> tuple[str, ...]:
    """handles on ``image`` (its own mask), with a caption and a move."""
    return ("handles", image, "--mask", image, "--prompt", "a red cube", *MOVE, *OUT)


@dataclass(frozen=True)
class Case:
    name: str
    """Short id, unique; the docs table's first column."""
    argv: tuple[str, ...]
    expect: str
    """Words the one-line error must contain (case-insensitive)."""
    what: str
    """The bad input, in words, for the docs table."""


CASES: tuple[Case, ...] = (
    # captions
    Case("empty-prompt", ("generate", "", "--out", "{out}"), "empty", "an empty prompt"),
    Case("blank-prompt", ("generate", "   ", "--out", "{out}"), "empty", "a prompt of spaces"),
    Case("no-prompt", ("generate", "--out", "{out}"), "no prompt", "no prompt at all"),
    Case(
        "unknown-shape",
        ("generate", "a red dodecahedron", "--out", "{out}"),
        "unknown word",
        "a shape the world does not have",
    ),
    Case(
        "unknown-words",
        ("generate", "zzz qqq", "--out", "{out}"),
        "unknown word",
        "words of no vocabulary",
    ),
    Case(
        "colour-only",
        ("generate", "red", "--out", "{out}"),
        "cannot read",
        "a colour without a shape",
    ),
    Case(
        "dangling-relation",
        ("generate", "a red cube with", "--out", "{out}"),
        "cannot read",
        "a relation with no second object",
    ),
    Case(
        "prompt-and-prompts",
        ("generate", "a red cube", "--prompts", "{empty_file}", "--out", "{out}"),
        "not both",
        "a PROMPT and --prompts",
    ),
    Case(
        "prompts-missing",
        ("generate", "--prompts", "{missing}", "--out", "{out}"),
        "cannot read prompts file",
        "--prompts naming no file",
    ),
    Case(
        "prompts-empty",
        ("generate", "--prompts", "{empty_file}", "--out", "{out}"),
        "no prompt",
        "--prompts of an empty file",
    ),
    Case(
        "batch-without-prompts",
        ("generate", "a red cube", "--batch", "4", "--out", "{out}"),
        "--batch trains the prompts of --prompts",
        "--batch without --prompts",
    ),
    Case(
        "batch-on-ray",
        ("generate", "--prompts", "{empty_file}", "--batch", "4", "--ray", "--out", "{out}"),
        "takes no --batch",
        "--batch with --ray",
    ),
    Case(
        "world-unknown",
        ("world", "render", "a red banana", "--out", "{out}"),
        "unknown word",
        "world render of an unknown shape",
    ),
    # numbers
    Case("cfg-nan", (*GEN, "--cfg", "nan"), "--cfg", "--cfg nan"),
    Case("cfg-inf", (*GEN, "--cfg", "inf"), "finite number", "--cfg inf"),
    Case("time-budget-nan", (*GEN, "--time-budget", "nan"), "--time-budget", "--time-budget nan"),
    Case("steps-zero", (*GEN, "--steps", "0"), "--steps", "--steps 0"),
    Case("steps-text", (*GEN, "--steps", "many"), "--steps", "--steps many"),
    Case(
        "resolution-huge", (*GEN, "--resolution", "100000"), "--resolution", "--resolution 100000"
    ),
    Case("seed-huge", (*GEN, "--seed", "1" + "0" * 30), "seed", "--seed 10^30"),
    Case("seed-negative", (*GEN, "--seed", "-5"), "seed", "--seed -5"),
    Case("threads-zero", (*GEN, "--threads", "0"), "--threads", "--threads 0"),
    Case("set-steps-nan", (*GEN, "--set", "steps=nan"), "steps", "--set steps=nan"),
    Case(
        "set-lr-nan",
        (*GEN, "--set", "gaussians.lr_means=nan"),
        "finite number",
        "--set a learning rate nan",
    ),
    Case(
        "set-lr-inf",
        (*GEN, "--set", "gaussians.lr_means=1e999"),
        "finite number",
        "--set a learning rate 1e999",
    ),
    Case("set-unknown", (*GEN, "--set", "stepz=10"), "stepz", "--set of an unknown setting"),
    Case("set-no-equals", (*GEN, "--set", "steps"), "key=value", "--set without KEY=VALUE"),
    Case(
        "edit-eta-nan",
        (*EDIT, "--eta", "nan", *OUT),
        "eta",
        "edit --eta nan",
    ),
    Case(
        "edit-eta-range",
        (*EDIT, "--eta", "3", *OUT),
        "eta",
        "edit --eta 3",
    ),
    Case(
        "handles-translate-nan",
        (*SCENE, "1", "--translate", "nan", "0", "0", *OUT),
        "finite",
        "handles --translate nan 0 0",
    ),
    Case(
        "handles-scale-zero",
        (*SCENE, "1", "--scale", "0", *OUT),
        "scale",
        "handles --scale 0",
    ),
    Case(
        "invert-yaw-inf",
        ("invert", "--head", "0", "--yaw", "inf", "--out", "{out}"),
        "finite",
        "invert --yaw inf",
    ),
    Case(
        "sample-cfg-nan",
        ("sample", "a red cube", "--cfg", "nan", "--out", "{out}"),
        "--cfg",
        "sample --cfg nan",
    ),
    # names
    Case("field-unknown", (*GEN, "--field", "voxels"), "voxels", "--field voxels"),
    Case("guidance-unknown", (*GEN, "--guidance", "vsd"), "vsd", "--guidance vsd"),
    Case("preset-unknown", (*GEN, "--preset", "turbo"), "turbo", "--preset turbo"),
    Case(
        "prior-missing-folder",
        (*GEN, "--prior", "{missing}"),
        "not found",
        "--prior naming no folder",
    ),
    Case(
        "prior-unknown-name",
        (*GEN, "--prior", "toy-imagen"),
        "toy-imagen",
        "--prior of no zoo name",
    ),
    Case("device-unknown", (*GEN, "--device", "tpu"), "tpu", "--device tpu"),
    Case("export-unknown", (*GEN, "--export", "fbx"), "fbx", "--export fbx"),
    Case("zoo-unknown", ("zoo", "train", "toy-imagen"), "toy-imagen", "zoo train of no zoo name"),
    # files
    Case("config-missing", (*GEN, "--config", "{missing}"), "config", "--config naming no file"),
    Case("config-corrupt", (*GEN, "--config", "{bad_yaml}"), "yaml", "--config of broken YAML"),
    Case("config-list", (*GEN, "--config", "{list_yaml}"), "config", "--config of a YAML list"),
    Case("init-ply-missing", (*GEN, "--init", "{missing}.ply"), "ply", "--init naming no .ply"),
    Case(
        "init-ply-truncated",
        (*GEN, "--init", "{truncated_ply}"),
        "ply",
        "--init of a truncated .ply",
    ),
    Case(
        "init-ply-garbage",
        (*GEN, "--init", "{garbage_ply}"),
        "ply",
        "--init of a text file named .ply",
    ),
    Case(
        "data-missing",
        ("reconstruct", "--data", "{missing}", "--out", "{out}"),
        "transforms",
        "--data naming nothing",
    ),
    Case(
        "data-bad-json",
        ("reconstruct", "--data", "{bad_json}", "--out", "{out}"),
        "json",
        "--data of broken JSON",
    ),
    Case(
        "data-no-frames",
        ("reconstruct", "--data", "{no_frames}", "--out", "{out}"),
        "frames",
        "--data with no frames",
    ),
    Case(
        "data-missing-image",
        ("reconstruct", "--data", "{missing_image}", "--out", "{out}"),
        "missing",
        "--data naming an absent image",
    ),
    Case(
        "data-mixed-sizes",
        ("reconstruct", "--data", "{mixed_sizes}", "--out", "{out}"),
        "size",
        "--data of images of two sizes",
    ),
    Case(
        "reconstruct-nothing",
        ("reconstruct", "--out", "{out}"),
        "--asset",
        "reconstruct with neither --asset nor --data",
    ),
    Case(
        "edit-not-a-run",
        ("edit", "{empty_dir}", "a blue cube", "--out", "{out}"),
        "run",
        "edit of a folder that is no run",
    ),
    Case("edit-no-prompt", ("edit", "{run}", "--out", "{out}"), "prompt", "edit without a prompt"),
    Case(
        "edit-lpips-missing",
        (*EDIT, "--lpips", "{missing}", *OUT),
        "lpips",
        "edit --lpips naming no folder",
    ),
    Case(
        "handles-object-range",
        (*SCENE, "7", *MOVE, *OUT),
        "object",
        "handles --object 7 of a 2-object scene",
    ),
    Case(
        "handles-image-missing",
        photo("{missing}.png"),
        "does not exist",
        "handles of an absent image",
    ),
    Case(
        "handles-image-garbage",
        photo("{garbage_png}"),
        "image",
        "handles of a text file named .png",
    ),
    Case(
        "invert-head-range",
        ("invert", "--head", "100000", "--out", "{out}"),
        "head",
        "invert --head 100000",
    ),
    Case(
        "invert-image-garbage",
        ("invert", "{garbage_png}", "--out", "{out}"),
        "image",
        "invert of a text file named .png",
    ),
    Case(
        "blend-unknown-part",
        (*BLEND, "--part", "tail", *OUT),
        "unknown part",
        "blend --part tail",
    ),
    Case("blend-no-region", (*BLEND, *OUT), "--part NAME or --mask FILE", "blend without a region"),
    Case(
        "blend-one-image",
        ("blend", "{garbage_png}", "--part", "hair", *OUT),
        "both images",
        "blend of one image",
    ),
    Case(
        "blend-image-garbage",
        ("blend", "{garbage_png}", "{garbage_png}", "--part", "hair", "--yaw", "0", *OUT),
        "image",
        "blend of text files named .png",
    ),
    Case(
        "blend-mask-garbage",
        (*BLEND, "--mask", "{garbage_png}", *OUT),
        "image",
        "blend --mask of a text file named .png",
    ),
    Case(
        "blend-reference-attribute",
        (*BLEND, "--part", "hair", "--reference-set", "wings=2", *OUT),
        "unknown head attribute",
        "blend --reference-set wings=2",
    ),
    Case(
        "blend-head-range",
        ("blend", "--head", "203", "--reference-head", "999", "--part", "hair", *OUT),
        "does not exist",
        "blend --reference-head 999",
    ),
    Case(
        "face-unknown-word",
        ("face", "--head", "203", "--prompt", "a person with wings", *OUT),
        "unknown word",
        "face --prompt 'a person with wings'",
    ),
    Case(
        "face-light-count",
        ("face", "--head", "203", "--sh", "1,0,0", *OUT),
        "9 SH coefficients",
        "face --sh with 3 values",
    ),
    Case(
        "face-light-nan",
        ("face", "--head", "203", "--sh", "1,0,0,0,0,0,0,0,nan", *OUT),
        "finite",
        "face --sh with a NaN",
    ),
    Case(
        "face-no-face",
        ("face", "{white_png}", "--yaw", "0", "--pitch", "10", *OUT),
        "no face found",
        "face of a blank white image",
    ),
    Case(
        "face-not-a-generator",
        ("face", "--head", "203", "--generator", "toy-id", *OUT),
        "not a tri-plane generator",
        "face --generator naming toy-id",
    ),
    Case(
        "face-object-prior",
        ("face", "--head", "203", "--prompt", "a person", "--prior", "toy-sd", *OUT),
        "head captions",
        "face --prior toy-sd (no head words)",
    ),
    Case("face-nothing", ("face", *OUT), "nothing to do", "face with no input and no prompt"),
    # run folders
    Case("out-is-a-file", (*GEN[:-1], "{a_file}"), "output folder", "--out naming a file"),
    Case("out-under-a-file", (*GEN[:-1], "{a_file}/sub"), "output folder", "--out inside a file"),
    Case(
        "out-finished-run",
        (*REC[:-1], "{run}"),
        "--resume",
        "--out of a finished run, without --resume",
    ),
    Case(
        "resume-other-command",
        ("generate", "--resume", "--out", "{run}"),
        "reconstruct",
        "generate --resume of a reconstruct run",
    ),
    Case(
        "resume-corrupt-checkpoint",
        (*REC[:-1], "{run_corrupt}", "--resume"),
        "corrupt",
        "--resume of a corrupt checkpoint",
    ),
    Case(
        "resume-truncated-checkpoint",
        (*REC[:-1], "{run_truncated}", "--resume"),
        "corrupt",
        "--resume of a truncated checkpoint",
    ),
    Case(
        "resume-corrupt-config",
        (*REC[:-1], "{run_bad_config}", "--resume"),
        "config",
        "--resume of a run whose config.yaml is broken",
    ),
    Case(
        "resume-change-setting",
        (*REC[:-1], "{run}", "--resume", "--field", "nerf"),
        "resume",
        "--resume changing the field",
    ),
)


def _tiny_run(out: Path) -> None:
    from dreamlift.methods.reconstruct import build_config, reconstruct

    config = build_config(
        asset="a red cube", resolution=16, train_views=2, steps=4, turntable_frames=2
    )
    reconstruct(config, out, quiet=True)


def _transforms(folder: Path, frames: list[dict] | None, sizes=(16, 16)) -> Path:
    """A transforms.json folder: ``frames`` as given (None: two frames of ``sizes``)."""
    folder.mkdir(parents=True)
    if frames is None:
        frames = []
        for i, size in enumerate(sizes):
            Image.new("RGB", (size, size), "white").save(folder / f"{i}.png")
            pose = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2.7], [0, 0, 0, 1]]
            frames.append({"file_path": f"{i}.png", "transform_matrix": pose})
    doc = {"camera_angle_x": 0.7, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(doc))
    return folder


def _write_truncated_ply(run: Path, target: Path) -> None:
    """The first half of the run's exported .ply (its header whole, its vertices cut)."""
    plys = sorted(run.glob("*.ply"))
    if not plys:
        raise RuntimeError(
            f"the tiny run exported no .ply: {sorted(p.name for p in run.iterdir())}"
        )
    data = plys[0].read_bytes()
    target.write_bytes(data[: len(data) // 2])


def make_files(root: Path) -> dict[str, Path]:
    """The broken, foreign and missing files the cases name, made in ``root`` (a finished
    reconstruct run among them: a few seconds)."""
    run = root / "run"
    _tiny_run(run)
    paths = {"run": run, "missing": root / "does-not-exist"}
    for name, damage in {
        "run_corrupt": lambda p: p.write_bytes(b"\x00" * 64 + p.read_bytes()[64:]),
        "run_truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    }.items():
        shutil.copytree(run, root / name)
        damage(root / name / "checkpoint.safetensors")
        paths[name] = root / name
    shutil.copytree(run, root / "run_bad_config")
    (root / "run_bad_config" / "config.yaml").write_text("field: [gaussians\n  steps: :\n")
    paths["run_bad_config"] = root / "run_bad_config"

    def text(name: str, content: str) -> Path:
        (root / name).write_text(content)
        return root / name

    paths["empty_file"] = text("empty.txt", "\n  \n")
    paths["a_file"] = text("a-file", "not a folder")
    paths["bad_yaml"] = text("bad.yaml", "steps: [1, 2\nfield: :\n")
    paths["list_yaml"] = text("list.yaml", "- steps\n- 10\n")
    paths["truncated_ply"] = root / "truncated.ply"
    _write_truncated_ply(run, paths["truncated_ply"])
    paths["garbage_ply"] = text("garbage.ply", "this is not a point cloud\n")
    paths["garbage_png"] = text("garbage.png", "this is not an image\n")
    paths["white_png"] = root / "white.png"
    Image.new("RGB", (64, 64), (255, 255, 255)).save(paths["white_png"])
    (root / "empty-dir").mkdir()
    paths["empty_dir"] = root / "empty-dir"
    paths["bad_json"] = root / "bad-json"
    paths["bad_json"].mkdir()
    (paths["bad_json"] / "transforms.json").write_text('{"frames": [')
    paths["no_frames"] = _transforms(root / "no-frames", [])
    paths["missing_image"] = _transforms(root / "missing-image", None)
    (paths["missing_image"] / "1.png").unlink()
    paths["mixed_sizes"] = _transforms(root / "mixed-sizes", None, sizes=(16, 24))
    return paths
