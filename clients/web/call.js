// S²VC browser call (docs/webrtc.md): the camera goes to the server over WebRTC, the S²VC reconstruction comes
// back as a video track, per-frame stats and control messages travel on the "stats" data channel.
// No build step and no external resources. Tests read document.body.dataset.state and window.s2vcCall.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("setup"), key: $("key"), room: $("room"), role: $("role"), start: $("start"), hangup: $("hangup"),
    error: $("error"), stateLabel: $("state-label"), local: $("local"), coded: $("coded"),
    rate: $("rate"), rateValue: $("rate-value"), target: $("target"), setTarget: $("set-target"),
    keyframe: $("keyframe"),
  };
  const KEY_STORAGE = "s2vc.apiKey";
  const ICE_GATHER_TIMEOUT_MS = 5000;
  const STATES = { new: "connecting", connecting: "connecting", connected: "connected", disconnected: "connecting",
                   failed: "failed", closed: "closed" };

  let call = null; // the call in progress: {pc, channel, camera, id, key, timer, ending}

  // What tests (and the console) can read: the peer connection, the call id, the last stats message and counters.
  function callInfo(pc) {
    return { pc, id: null, stats: null, statsMessages: 0, units: { I: 0, P: 0 }, framesReceived: 0 };
  }

  function setState(state, label) {
    document.body.dataset.state = state;
    el.stateLabel.textContent = label || state;
    const active = state === "connecting" || state === "connected";
    el.start.disabled = active;
    el.hangup.disabled = !active;
    for (const input of [el.key, el.room, el.role]) input.disabled = active;
  }

  function showError(text) {
    el.error.textContent = text || "";
  }

  function setControlsEnabled(on) {
    for (const control of [el.rate, el.setTarget, el.keyframe]) control.disabled = !on;
  }

  function send(message) {
    if (call && call.channel && call.channel.readyState === "open") {
      call.channel.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function authHeaders(key) {
    return { Authorization: "Bearer " + key };
  }

  // The server's reason for a failed request: FastAPI's "detail" (a string, or a list of validation errors).
  async function errorDetail(response) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body && body.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
      else if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
    } catch (_) { /* not JSON */ }
    return `${response.status} ${response.statusText || ""}`.trim() + (detail ? `: ${detail}` : "");
  }

  function waitForIceGathering(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === "complete") done(); };
      const timer = setTimeout(done, ICE_GATHER_TIMEOUT_MS); // send what was gathered so far
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  const fixed = (value, digits) => (typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–");

  function showStats(stats) {
    $("stat-kbps").textContent = fixed(stats.kbps, 1);
    $("stat-bpp").textContent = fixed(stats.bpp, 4);
    $("stat-fps").textContent = fixed(stats.fps, 1);
    $("stat-latency").textContent = fixed(stats.latency_ms, 0);
    const auto = stats.target_kbps != null ? ` (rate control, target ${stats.target_kbps} kbps)` : "";
    $("stat-rate").textContent = `${stats.rate} of 0–${Math.max(0, (stats.rates || 1) - 1)}${auto}`;
    $("stat-frames").textContent = String(stats.frame);
    $("stat-dropped").textContent = String(stats.dropped);
    $("stat-size").textContent = `${stats.width}×${stats.height}`;
    if (Number.isInteger(stats.rates) && stats.rates > 0) el.rate.max = String(stats.rates - 1);
    if (document.activeElement !== el.rate && Number.isInteger(stats.rate)) {
      el.rate.value = String(stats.rate);
      el.rateValue.textContent = el.rate.value;
    }
  }

  function onChannelMessage(event) {
    if (typeof event.data !== "string") return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (message.type === "stats") {
      window.s2vcCall.stats = message;
      window.s2vcCall.statsMessages += 1;
      if (message.unit === "I" || message.unit === "P") window.s2vcCall.units[message.unit] += 1;
      showStats(message);
    } else if (message.type === "error") {
      showError("Server: " + message.message);
    }
  }

  // Frames of the coded track that reached this browser (inbound-rtp "framesReceived"), polled twice a second.
  async function pollReceiverStats(pc) {
    try {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video" && typeof s.framesReceived === "number") {
          window.s2vcCall.framesReceived = s.framesReceived;
        }
      });
    } catch (_) { /* the connection is closing */ }
  }

  function initialNumber(params, name) {
    const value = params.get(name);
    return value !== null && value !== "" && isFinite(Number(value)) ? Number(value) : null;
  }

  async function startCall() {
    if (call) return;
    showError("");
    const key = el.key.value.trim();
    if (!key) {
      showError("Enter an API key.");
      return;
    }
    try { localStorage.setItem(KEY_STORAGE, key); } catch (_) { /* storage off */ }
    const room = el.room.value.trim() || null;
    const role = el.role.value;
    const target = el.target.value === "" ? null : Number(el.target.value);

    const pc = new RTCPeerConnection({ iceServers: [] });
    const current = { pc, channel: null, camera: null, id: null, key, timer: null, ending: false };
    call = current;
    window.s2vcCall = callInfo(pc);
    setState("connecting");

    pc.onconnectionstatechange = () => {
      if (call !== current) return;
      const state = STATES[pc.connectionState] || pc.connectionState;
      if (state === "failed" || state === "closed") {
        if (state === "failed") showError("The connection failed.");
        endCall(state);
      } else {
        setState(state, pc.connectionState === "disconnected" ? "reconnecting" : state);
      }
    };
    pc.ontrack = (event) => {
      el.coded.srcObject = event.streams[0] || new MediaStream([event.track]);
    };

    try {
      if (role === "subscriber") {
        pc.addTransceiver("video", { direction: "recvonly" });
      } else {
        const constraints = { video: { width: 640, height: 480 }, audio: false };
        current.camera = await navigator.mediaDevices.getUserMedia(constraints);
        if (call !== current) { stopCamera(current); return; }
        el.local.srcObject = current.camera;
        const stream = current.camera;
        pc.addTransceiver(stream.getVideoTracks()[0], { direction: "sendrecv", streams: [stream] });
      }

      const channel = pc.createDataChannel("stats", { ordered: true });
      current.channel = channel;
      channel.onopen = () => { if (call === current) setControlsEnabled(true); };
      channel.onclose = () => { // the server hung up (bye from another tab, DELETE, shutdown)
        setControlsEnabled(false);
        if (call === current && !current.ending && current.id) {
          showError("The server ended the call.");
          endCall("closed");
        }
      };
      channel.onmessage = onChannelMessage;

      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      if (call !== current) return;

      const offer = pc.localDescription;
      const body = { sdp: offer.sdp, type: offer.type, mode: "preview", room, role,
                     rate: Number(el.rate.value) || 0, target_kbps: target };
      const response = await fetch("/v1/webrtc/offer", {
        method: "POST",
        headers: { ...authHeaders(key), "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) throw new Error(await errorDetail(response));
      const answer = await response.json();
      if (call !== current) return;
      current.id = answer.id;
      window.s2vcCall.id = answer.id;
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
      current.timer = setInterval(() => pollReceiverStats(pc), 500);
    } catch (err) {
      if (call !== current) return;
      const camera = err && (err.name === "NotAllowedError" || err.name === "NotFoundError") ? "Camera: " : "";
      showError(camera + (err && err.message ? err.message : String(err)));
      endCall("failed");
    }
  }

  function stopCamera(c) {
    if (c.camera) c.camera.getTracks().forEach((t) => t.stop());
    c.camera = null;
  }

  // Hang up (the user, a failed connection, the page going away): bye on the channel, DELETE the call, close.
  async function endCall(finalState = "closed", keepalive = false) {
    const c = call;
    if (!c || c.ending) return;
    c.ending = true;
    clearInterval(c.timer);
    setControlsEnabled(false);
    if (c.channel && c.channel.readyState === "open") {
      try { c.channel.send(JSON.stringify({ type: "bye" })); } catch (_) { /* closing */ }
    }
    if (c.id) {
      try {
        const response = await fetch(`/v1/webrtc/${encodeURIComponent(c.id)}`,
                                     { method: "DELETE", headers: authHeaders(c.key), keepalive });
        if (!response.ok && response.status !== 404 && response.status !== 410) {
          showError("Hang up: " + (await errorDetail(response)));
        }
      } catch (err) {
        showError("Hang up: " + (err && err.message ? err.message : String(err)));
      }
    }
    c.pc.close();
    stopCamera(c);
    el.local.srcObject = null;
    el.coded.srcObject = null;
    if (call === c) call = null;
    setState(finalState);
  }

  function init() {
    const params = new URLSearchParams(location.search);
    let stored = null;
    try { stored = localStorage.getItem(KEY_STORAGE); } catch (_) { /* storage off */ }
    el.key.value = params.get("key") || stored || "";
    el.room.value = params.get("room") || "";
    if (params.get("role") === "subscriber" || params.get("role") === "publisher") el.role.value = params.get("role");
    const rate = initialNumber(params, "rate");
    if (rate !== null && rate >= 0) {
      el.rate.max = String(Math.floor(rate));
      el.rate.value = String(Math.floor(rate));
      el.rateValue.textContent = el.rate.value;
    }
    const target = initialNumber(params, "target");
    if (target !== null && target > 0) el.target.value = String(target);
    if (params.has("key")) { // keep the key out of the address bar and the history
      params.delete("key");
      const query = params.toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
    }
    window.s2vcCall = callInfo(null);
    setState("idle");

    el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      startCall();
    });
    el.hangup.addEventListener("click", () => endCall("closed"));
    el.rate.addEventListener("input", () => {
      el.rateValue.textContent = el.rate.value;
      send({ type: "rate", rate: Number(el.rate.value) });
    });
    el.setTarget.addEventListener("click", () => {
      const value = el.target.value.trim();
      const kbps = value === "" ? null : Number(value);
      if (kbps !== null && !(kbps > 0)) {
        showError("Target kbps must be a positive number (empty: off).");
        return;
      }
      send({ type: "target", kbps });
    });
    el.keyframe.addEventListener("click", () => send({ type: "keyframe" }));
    window.addEventListener("pagehide", () => endCall("closed", true));

    if (params.get("autostart") === "1") startCall();
  }

  init();
})();
