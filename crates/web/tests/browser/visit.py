"""Drives a real headless Chromium through Cairn's web page (Playwright,
with Debian's chromium). Two phases, so that the Rust test can kill a
storage node in between:

  visit.py files    log in, upload a file, see it listed, download it,
                    compare, delete it (with its confirmation)
  visit.py cluster  the cluster page shows a node the test killed as down

Settings come from the environment: WEB_URL, WEB_USER, WEB_PASSWORD,
UPLOAD (a local file), SHOTS (where screenshots go), CHROMIUM, DOWN_NODE.
Exits non-zero with what went wrong.
"""

import hashlib
import os
import sys
import tempfile

from playwright.sync_api import expect, sync_playwright

URL = os.environ["WEB_URL"]
SHOTS = os.environ["SHOTS"]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def log_in(page):
    page.goto(f"{URL}/files/")
    expect(page).to_have_url(f"{URL}/login?next=%2Ffiles%2F")
    page.screenshot(path=f"{SHOTS}/login.png")
    page.get_by_label("User").fill(os.environ["WEB_USER"])
    page.get_by_label("Password").fill(os.environ["WEB_PASSWORD"])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"Logged in as {os.environ['WEB_USER']}")).to_be_visible()


def files(page):
    log_in(page)
    upload = os.environ["UPLOAD"]
    name = os.path.basename(upload)
    # The page's script uploads with a progress bar, then reloads.
    page.set_input_files("input[name=file]", upload)
    page.get_by_role("button", name="Upload", exact=True).click()
    row = page.get_by_role("link", name=name, exact=True)
    expect(row).to_be_visible(timeout=120_000)
    page.screenshot(path=f"{SHOTS}/listing.png", full_page=True)
    # Download from the listing, and compare byte for byte.
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("row", name=name).get_by_role("link", name="Download").click()
    saved = os.path.join(tempfile.mkdtemp(), name)
    info.value.save_as(saved)
    if sha256(saved) != sha256(upload):
        sys.exit(f"the downloaded {name} differs from the uploaded one")
    # The file's page, then its deletion with the confirmation.
    row.click()
    expect(page.get_by_role("heading", name="Chunks")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/details.png", full_page=True)
    page.get_by_role("link", name=f"Delete {name}").click()
    expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)


def cluster(page):
    log_in(page)
    page.get_by_role("link", name="Cluster").click()
    down = os.environ["DOWN_NODE"]
    # The health part refreshes itself: the killed node turns down.
    row = page.get_by_role("row").filter(has_text=down)
    expect(row.locator(".state")).to_have_text("down", timeout=60_000)
    expect(page.get_by_text("2 of 3 storage nodes up")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/cluster.png", full_page=True)


def main():
    phase = sys.argv[1]
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            # Root (as CI runs) cannot use Chromium's sandbox.
            args=["--no-sandbox"],
        )
        page = browser.new_page(accept_downloads=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        {"files": files, "cluster": cluster}[phase](page)
        browser.close()
        if errors:
            sys.exit(f"the page's script failed: {errors}")
    print(f"{phase}: ok")


if __name__ == "__main__":
    main()
