// Passkeys (WebAuthn): the browser side of identity/accounts/passkey_views.py. Buttons
// carry their endpoints in data attributes; the page's CSRF token is its forms' one.
"use strict";

function csrfToken() {
  const field = document.querySelector('input[name="csrf_token"]');
  return field ? field.value : "";
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(data.error || "Something went wrong. Try again.");
  }
  return data;
}

function report(message) {
  const box = document.getElementById("passkey-status");
  if (box) {
    box.textContent = message;
    box.hidden = false;
  }
}

function supported() {
  if (window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON) {
    return true;
  }
  report("This browser cannot use passkeys here. Update it, or use another way to sign in.");
  return false;
}

async function register(button) {
  if (!supported()) return;
  try {
    const options = await postJson(button.dataset.options);
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
    });
    const name = document.getElementById("passkey-name");
    const done = await postJson(button.dataset.passkeyRegister, {
      name: name ? name.value : "",
      credential: credential.toJSON(),
    });
    window.location.assign(done.redirect);
  } catch (error) {
    report(error.name === "NotAllowedError" ? "The passkey was not created." : error.message);
  }
}

async function signIn(button) {
  if (!supported()) return;
  try {
    const options = await postJson(button.dataset.options, { next: button.dataset.next || "" });
    const credential = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
    });
    const done = await postJson(button.dataset.passkeySignIn, {
      credential: credential.toJSON(),
    });
    window.location.assign(done.redirect);
  } catch (error) {
    report(error.name === "NotAllowedError" ? "No passkey was used." : error.message);
  }
}

document.querySelectorAll("[data-passkey-register]").forEach((button) => {
  button.addEventListener("click", () => register(button));
});
document.querySelectorAll("[data-passkey-sign-in]").forEach((button) => {
  button.addEventListener("click", () => signIn(button));
});
