// Cairn's web page: upload progress, drag and drop, and confirmations.
// Everything here is an addition: every form works without it.
"use strict";

// Uploads go through XMLHttpRequest for its progress events; the server
// answers plain text to requests that carry the x-cairn-upload header.
function upload(action, formData, progress, status) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", action);
    request.setRequestHeader("x-cairn-upload", "1");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        progress.hidden = false;
        progress.value = Math.round((event.loaded * 100) / event.total);
        status.textContent = `Uploading… ${progress.value}%`;
      }
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        resolve(request.responseText);
      } else {
        // The server's page says what went wrong: show its message.
        const page = new DOMParser().parseFromString(request.responseText, "text/html");
        const message = page.querySelector("[role=alert]");
        reject(new Error(message ? message.textContent : `upload failed (${request.status})`));
      }
    });
    request.addEventListener("error", () => reject(new Error("the connection failed")));
    request.send(formData);
  });
}

function setUp() {
  const form = document.getElementById("upload");
  if (!form) {
    return;
  }
  const progress = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  const send = async (formData) => {
    try {
      const answer = await upload(form.action, formData, progress, status);
      status.textContent = answer;
      window.location.reload();
    } catch (error) {
      status.textContent = `Upload failed: ${error.message}`;
      status.classList.add("error");
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(new FormData(form));
  });

  // Drag and drop of files and folders anywhere on the page.
  const zone = document.getElementById("dropzone");
  zone.hidden = false;
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("active");
  });
  document.addEventListener("dragleave", () => zone.classList.remove("active"));
  document.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("active");
    const formData = new FormData();
    if (form.querySelector("input[name=replace]").checked) {
      formData.append("replace", "1");
    }
    const entries = [...event.dataTransfer.items]
      .map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
      .filter(Boolean);
    if (entries.length === 0) {
      for (const file of event.dataTransfer.files) {
        formData.append("file", file, file.name);
      }
    } else {
      for (const entry of entries) {
        await addEntry(formData, entry, "");
      }
    }
    send(formData);
  });
}

// Adds a dropped file, or every file below a dropped folder, under its
// relative path.
async function addEntry(formData, entry, prefix) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    formData.append("file", file, prefix + entry.name);
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (batch.length === 0) {
        break;
      }
      for (const child of batch) {
        await addEntry(formData, child, `${prefix}${entry.name}/`);
      }
    }
  }
}

// Forms whose button says data-confirm ask first.
document.addEventListener("submit", (event) => {
  const button = event.target.querySelector("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
}, true);

document.addEventListener("DOMContentLoaded", setUp);
