"""Every file of the hostile corpus (tests/corpus) is answered as expected.json says, through both
upload paths and through common.images directly: a 4xx problem+json with a reason, never a 500, and
nothing stored changes; accepted files decode to upright RGB of the expected size."""
import io
import json
from itertools import zip_longest
from pathlib import Path

import pytest
from PIL import Image

from common.images import MEDIA_TYPES, ImageChecker, ImageLimits, ImageRejected, check_image, decode_rgb
from tests.app.test_bad_input import assert_problem, stored_state
from tests.corpus import make_corpus
from tests.factories import photo_bytes

CORPUS = Path(make_corpus.__file__).parent
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
REJECTED = [name for name, e in EXPECTED.items() if e["outcome"] == "rejected"]
ACCEPTED = [name for name, e in EXPECTED.items() if e["outcome"] == "accepted"]
LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000, min_side=16)  # the settings' defaults


def corpus_bytes(name: str) -> bytes:
    return (CORPUS / "files" / name).read_bytes()


def test_corpus_is_generated_by_its_script_and_small():
    generated = make_corpus.cases()
    assert sorted(generated) == sorted(EXPECTED) == sorted(p.name for p in (CORPUS / "files").iterdir())
    for name, (data, outcome) in generated.items():
        assert data == corpus_bytes(name), f"{name} differs: rerun python -m tests.corpus.make_corpus"
        assert outcome == EXPECTED[name]
    assert sum(len(d) for d, _ in generated.values()) < 1_000_000


@pytest.mark.parametrize("name", REJECTED)
def test_check_image_rejects(name):
    expected = EXPECTED[name]
    with pytest.raises(ImageRejected) as caught:
        check_image(corpus_bytes(name), LIMITS)
    assert (caught.value.status, caught.value.reason) == (expected["status"], expected["reason"])
    assert caught.value.detail


@pytest.mark.parametrize("name", ACCEPTED)
def test_check_image_accepts_and_decode_rgb_makes_upright_rgb(name):
    expected, data = EXPECTED[name], corpus_bytes(name)
    checked = check_image(data, LIMITS)
    assert checked.format == expected["format"] and checked.media_type == MEDIA_TYPES[expected["format"]]
    image = decode_rgb(data)
    assert image.mode == "RGB" and list(image.size) == expected["size"]  # transposed when EXIF says so
    assert image.getextrema() != ((255, 255),) * 3, "decoded to a blank white image"


def test_one_checker_answers_every_file_in_a_row_like_check_image():
    """The bulk path checks a request's images one after another in one child (ImageChecker): a file
    after a corrupt, truncated or bomb file is answered as if it came alone."""
    names = [name for pair in zip_longest(REJECTED, ACCEPTED) for name in pair if name]  # in turn
    assert sorted(names) == sorted(EXPECTED)
    with ImageChecker(LIMITS) as checker:
        for name in names:
            expected = EXPECTED[name]
            try:
                checked = checker.check(corpus_bytes(name))
            except ImageRejected as exc:
                assert (exc.status, exc.reason) == (expected.get("status"), expected.get("reason")), name
                continue
            assert expected["outcome"] == "accepted", name
            assert checked == check_image(corpus_bytes(name), LIMITS), name


def test_sixteen_bit_grey_is_scaled_not_clipped():
    for name in ("gray16.png", "gray16_big_endian.tiff"):
        low, high = decode_rgb(corpus_bytes(name)).convert("L").getextrema()
        assert low < 16 and high > 240, name


def test_exif_orientation_turns_the_pixels():
    upright = decode_rgb(corpus_bytes("exif_orientation_6.jpg"))
    stored = Image.open(io.BytesIO(corpus_bytes("exif_orientation_6.jpg"))).convert("RGB")
    assert upright.tobytes() == stored.transpose(Image.Transpose.ROTATE_270).tobytes()


@pytest.fixture
def registered(client, service_env):
    files = [("images", ("dog.jpg", photo_bytes("dog", 0), "image/jpeg"))]
    assert client.post("/sources", files=files, data={"title": "dog", "rights_holder": "studio"}).status_code == 201
    return Path(service_env["ATTRIB_DATA_DIR"])


def test_every_rejected_file_is_refused_by_both_paths_and_changes_nothing(client, registered):
    # One deployment for the whole corpus: a fresh database per file would cost minutes.
    before = stored_state(registered)
    for name in REJECTED:
        expected = EXPECTED[name]
        files = [("images", ("ok.jpg", photo_bytes("cat", 0), "image/jpeg")), ("images", (name, corpus_bytes(name)))]
        response = client.post("/sources", files=files, data={"title": name, "rights_holder": "studio"})
        assert_problem(response, expected["status"], expected["reason"])
        response = client.post("/attribute", files={"image": (name, corpus_bytes(name))})
        assert_problem(response, expected["status"], expected["reason"])
        assert stored_state(registered) == before, name


def test_every_accepted_file_is_taken_by_both_paths(client, registered):
    for name in ACCEPTED:
        files = [("images", (name, corpus_bytes(name)))]
        response = client.post("/sources", files=files, data={"title": name, "rights_holder": "studio"})
        assert response.status_code == 201, (name, response.text)
        assert response.json()["images"][0]["media_type"] == MEDIA_TYPES[EXPECTED[name]["format"]]
        response = client.post("/attribute", files={"image": (name, corpus_bytes(name))})
        assert response.status_code == 202, (name, response.text)
