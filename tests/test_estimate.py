"""What the server tells before any work (issue 20): the options each route offers, what a model
chosen by hand ignores, the plan in words, the whole job's seconds, output by size, the limits the
page checks; and the time left of a running job, which never goes up at a steady pace."""

from __future__ import annotations

import io

import pytest
from flask import template_rendered
from PIL import Image

from esrgan.errors import UnsupportedScaleError
from esrgan.models import registry
from esrgan.models.registry import output_size
from esrgan.sizing import scale_for_size
from tests.conftest import crop_of, png_bytes
from web.jobs.eta import MIN_SHOWN_SECONDS, Priors, held, running_remaining, upscale_remaining
from web.jobs.record import Job

FAST = registry.ANIMEVIDEO_V3.name


@pytest.fixture
def client(make_app):
    """fp32 as it is: the one-time CPU measurement has its own test."""
    return make_app(PRECISION="fp32").test_client()


def estimate(client, **query):
    return client.get("/api/estimate", query_string={"width": 64, "height": 48, **query})


# --- options from the routes, warnings, the plan ---------------------------------------------------

def test_models_listing_gives_the_choices_of_each_route_and_keeps_admin_text_apart(client):
    listing = client.get("/api/models").get_json()
    choices = {(c["scale"], c["anime"]): c for c in listing["choices"]}
    for scale in registry.ROUTE_SCALES:
        for anime in (False, True):
            row = choices[(scale, anime)]
            assert row["noise_levels"] == [lv for lv in registry.NOISE_LEVELS if registry.route(scale, anime, lv)]
            assert set(row["available_noise_levels"]) <= set(row["noise_levels"])
            for name, level in row["noise_models"].items():
                assert registry.spec(name).noise == level
    assert "medium" in choices[(2, True)]["noise_levels"] and "medium" not in choices[(4, True)]["noise_levels"]
    for model in listing["models"]:
        assert "weights/" not in model["title"] + model["note"], model
        assert model["honours_noise"] == (model["noise"] is not None)
    x2plus = next(m for m in listing["models"] if m["name"] == registry.X2PLUS.name)
    assert "RealESRGAN_x2plus.pth" in x2plus["how_to_add"] and "weights/" in x2plus["how_to_add"]


def test_a_model_chosen_by_hand_says_what_it_ignores_before_sending(client):
    # The model by its title, as the page shows it, not its internal name.
    title = registry.spec(FAST).title
    body = estimate(client, scale=4, anime="true", noise="high", model=FAST).get_json()
    assert body["warnings"] == [f"{title} has no noise reduction: the noise level 'high' is ignored"]
    assert body["errors"] == []
    body = estimate(client, scale=4, model=FAST).get_json()
    assert body["warnings"] == [f"{title} is trained for anime and illustration: the content type is ignored"]
    assert estimate(client, scale=4, anime="true", model=FAST).get_json()["warnings"] == []


def test_a_route_that_does_not_exist_is_a_400_with_the_fix(client):
    answer = estimate(client, scale=4, anime="true", noise="medium")
    assert answer.status_code == 400
    assert "not available at 4x" in answer.get_json()["error"] and "2x" in answer.get_json()["error"]


def test_the_estimate_says_the_plan_in_words(client):
    body = estimate(client, scale=2.5, anime="true").get_json()
    plan = registry.plan(2.5, True, [m["name"] for m in client.get("/api/models").get_json()["models"]
                                      if m["available"]])
    title = next(m["title"] for m in client.get("/api/models").get_json()["models"] if m["name"] == plan.model)
    assert body["plan"]["model"] == plan.model and body["plan"]["title"] == title
    assert body["plan"]["text"] == (f"Will use {title} (native {plan.native_scale}x), then Lanczos "
                                    f"{'down' if plan.native_scale > 2.5 else 'up'} to 2.5x")
    native = estimate(client, scale=4, model=FAST).get_json()["plan"]
    assert native["text"] == f"Will use {registry.ANIMEVIDEO_V3.title} (native 4x)" and native["resample"] is None


def test_the_estimate_counts_the_preview_and_the_finish(make_app):
    client = make_app(PREVIEW_MIN_SECONDS=0, PRECISION="fp32").test_client()
    body = estimate(client, scale=2.5, anime="true", format="webp", width=320, height=240).get_json()
    parts = body["seconds_parts"]
    assert parts["preview"] > 0 and parts["upscale"] > 0 and parts["finish"] > 0
    assert body["seconds"] == pytest.approx(sum(parts.values()), abs=0.11)
    # The fast model previews nothing; a JPEG is cheaper to write than a WebP of the same size.
    fast = estimate(client, scale=4, model=FAST, format="jpg", width=640, height=480).get_json()["seconds_parts"]
    webp = estimate(client, scale=4, model=FAST, format="webp", width=640, height=480).get_json()["seconds_parts"]
    assert fast["preview"] == 0 and fast["finish"] < webp["finish"]


def test_the_page_gets_the_limits_as_data(app):
    client = app.test_client()
    seen = []

    def record(sender, template, context, **extra):
        seen.append(context)

    template_rendered.connect(record, app)
    try:
        assert client.get("/").status_code == 200
    finally:
        template_rendered.disconnect(record, app)
    context = seen[0]
    assert context["max_upload_bytes"] == app.config["MAX_CONTENT_LENGTH"]
    assert context["input_types"] == ["image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff"]
    limits = client.get("/api/models").get_json()["limits"]
    assert limits["input_types"] == context["input_types"] and limits["max_upload_bytes"] == context["max_upload_bytes"]
    assert {"type": "image/png", "offset": 0, "hex": "89504e470d0a1a0a"} in limits["magic_bytes"]


# --- output by size ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "target", "expected"), [
    ((640, 427), {"target_width": 1000}, (1000, 667)),
    ((640, 427), {"target_height": 1000}, (1498, 1000)),
    ((37, 23), {"target_width": 37}, (37, 23)),
    ((3, 1001), {"target_width": 23}, (23, 7674)),
])
def test_the_asked_side_comes_out_exactly(size, target, expected):
    scale = scale_for_size(*size, target.get("target_width"), target.get("target_height"))
    assert output_size(*size, scale) == expected


def test_a_size_past_8x_is_refused_with_the_sizes_that_work(client):
    answer = estimate(client, width=640, height=427, target_width=6000, model=FAST)
    assert answer.status_code == 400 and "from 640 to 5120 px" in answer.get_json()["error"]
    answer = estimate(client, width=640, height=427, target_height=300, model=FAST)
    assert answer.status_code == 400 and "from 427 to 3416 px" in answer.get_json()["error"]
    assert estimate(client, target_width=100, target_height=100, model=FAST).status_code == 400
    assert estimate(client, target_width=100, scale=2, model=FAST).status_code == 400
    with pytest.raises(UnsupportedScaleError):
        scale_for_size(10, 10)
    body = estimate(client, width=640, height=427, target_width=1000, model=FAST).get_json()
    assert (body["output_width"], body["output_height"]) == (1000, 667) and body["plan"]["text"].endswith("to 1.5625x")


def test_an_upload_asked_by_width_is_that_wide(client):
    photo = png_bytes(crop_of("coffee.png", (90, 90, 127, 113)))  # 37x23
    form = {"width": "100", "model": FAST, "file": (io.BytesIO(photo), "cup.png")}
    answer = client.post("/upscale", data=form, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["output_width"], body["output_height"]) == (100, 62) and body["download_name"] == "cup_100x62.png"
    served = client.get(body["output_path"])
    assert Image.open(io.BytesIO(served.get_data())).size == (100, 62)
    served.close()
    form = {"width": "400", "model": FAST, "file": (io.BytesIO(photo), "cup.png")}
    answer = client.post("/upscale", data=form, content_type="multipart/form-data")
    assert answer.status_code == 400 and "from 37 to 296 px" in answer.get_json()["error"]


# --- the time left ------------------------------------------------------------------------------

def shown_while_running(prior: float, real: float, preview: float = 0.0, finish: float = 0.0,
                        steps: int = 40) -> list[float]:
    """The figures a job shows when polled twice a step at a steady pace: its upscaling takes ``real``
    seconds where ``prior`` was predicted (recorded timestamps, no clock)."""
    job = Job(id="j", scale=4, anime=False, model="m", output_format="png", quality=90, original_name="a.png",
              input_file="j_in.png", input_width=8, input_height=8, output_width=32, output_height=32,
              status="running", stage="upscaling", estimate_seconds=prior, preview_estimate=preview,
              finish_estimate=finish, started_at=0.0, stage_started_at=0.0, upscale_started_at=0.0,
              steps_total=steps)
    figures = []
    for tick in range(2 * steps + 1):
        now = tick * real / (2 * steps)
        job.steps_done = tick // 2
        figures.append(job.eta_seconds(now=now or 1e-9))
    job.stage, job.stage_started_at = "encoding", real
    figures.append(job.eta_seconds(now=real + finish / 2))
    return figures


@pytest.mark.parametrize(("prior", "real"), [(16, 27), (16, 16), (30, 10), (5, 60), (60, 5)])
def test_the_time_left_never_goes_up_at_a_steady_pace(prior, real):
    figures = shown_while_running(prior, real, finish=2.0)
    assert all(b <= a for a, b in zip(figures, figures[1:])), figures
    assert min(figures) >= MIN_SHOWN_SECONDS
    # Once the pace is trusted, the figure is the truth (or, after a too-optimistic prior, below it
    # until the truth comes down to it).
    for tick, figure in enumerate(figures[:-1]):
        truth = real - tick * real / 80 + 2.0
        if tick / 80 >= 0.5:
            assert figure <= truth + 0.11 and (figure >= truth - 0.11 or figure == figures[tick - 1] or truth < 1)


def test_the_blend_moves_from_the_prior_to_the_pace():
    assert upscale_remaining(20.0, 0.0, 0.0) == 20.0
    assert upscale_remaining(None, 5.0, 0.0) is None
    assert upscale_remaining(None, 5.0, 0.5) == pytest.approx(5.0)
    assert upscale_remaining(20.0, 10.0, 0.5) == pytest.approx(10.0)  # pace trusted from 25%
    assert upscale_remaining(20.0, 1.0, 0.05) == pytest.approx(0.8 * 20 + 0.2 * 20 - 1)
    priors = Priors(upscale=10.0, preview=3.0, finish=2.0)
    assert running_remaining("loading", priors, 0.0, 0.0, preview_done=False) == 15.0
    assert running_remaining("previewing", priors, 1.0, 0.0, preview_done=False) == 14.0
    assert running_remaining("encoding", priors, 0.5, 1.0, preview_done=True) == 1.5
    assert held(9.0, 7.0) == 7.0 and held(5.0, 7.0) == 5.0 and held(0.2, None) == MIN_SHOWN_SECONDS


def test_counting_a_job_as_work_ahead_does_not_change_what_it_shows():
    job = Job(id="q", scale=4, anime=False, model="m", output_format="png", quality=90, original_name="a.png",
              input_file="q_in.png", input_width=8, input_height=8, output_width=32, output_height=32,
              estimate_seconds=10.0, finish_estimate=1.0)
    assert job.eta_seconds(now=5.0, ahead=30.0) == 41.0
    assert job.eta_seconds(now=5.0, remember=False) == 11.0  # as another job's poll counts it
    assert job.eta_seconds(now=5.0, ahead=30.0) == 41.0


def test_real_work_never_took_no_time():
    job = Job(id="f", scale=4, anime=False, model="m", output_format="png", quality=90, original_name="a.png",
              input_file="f_in.png", input_width=8, input_height=8, output_width=32, output_height=32,
              status="done", started_at=100.0, finished_at=100.03)
    assert job.elapsed_seconds() == 0.1  # a fast CPU's 30 ms job, shown in tenths
    assert Job(**{**job.__dict__, "started_at": None}).elapsed_seconds() is None  # queued: not started
