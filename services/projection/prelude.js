// The projection API of KurrentDB over esdb's batch protocol (see prelude.py).
var __esdb = (function () {
  var def = null;
  var emitEnabled = false;
  var emits = [];
  var states = {};
  var shared;
  var touched = {};
  var current = -1;
  function fail(message) { throw new Error(message); }
  function check(what) { if (def === null) fail(what + " needs a source: fromAll(), fromStream(), ..."); }
  var output = {
    outputState: function () { check("outputState"); def.outputState = true; return output; },
    filterBy: function (f) { check("filterBy"); def.shape.push({ filter: f }); return output; },
    transformBy: function (f) { check("transformBy"); def.shape.push({ map: f }); return output; },
    outputTo: function () { fail("outputTo is not supported: use emit"); }
  };
  var handled = {
    when: function (handlers) {
      check("when");
      if (handlers === null || typeof handlers !== "object") fail("when takes an object of handlers");
      def.handlers = handlers;
      return output;
    }
  };
  var partitioned = Object.assign({}, handled, {
    foreachStream: function () { check("foreachStream"); def.partition = "stream"; return handled; },
    partitionBy: function (f) {
      check("partitionBy");
      if (typeof f !== "function") fail("partitionBy takes a function");
      def.partition = f;
      return handled;
    }
  }, output);
  function source(kind, names) {
    if (def !== null) fail("a projection has one source");
    def = { kind: kind, names: names, handlers: {}, partition: null, shape: [], outputState: false };
    return partitioned;
  }
  function list(args) {
    var names = args.length === 1 && Array.isArray(args[0]) ? args[0] : Array.prototype.slice.call(args);
    names.forEach(function (n) { if (typeof n !== "string") fail("stream and category names are strings"); });
    return names;
  }
  globalThis.fromAll = function () { return source("all", []); };
  globalThis.fromStream = function (s) { return source("streams", list([s])); };
  globalThis.fromStreams = function () { return source("streams", list(arguments)); };
  globalThis.fromCategory = function (c) { return source("categories", list([c])); };
  globalThis.fromCategories = function () { return source("categories", list(arguments)); };
  globalThis.options = function () {};
  globalThis.log = function () {};
  function push(stream, type, data, metadata, link) {
    if (!emitEnabled) fail("emit and linkTo need emit_enabled");
    if (typeof stream !== "string" || stream.length === 0) fail("the target stream must be a non-empty string");
    emits.push({ s: stream, t: type, d: data, m: metadata === undefined ? null : metadata, l: link, i: current });
  }
  globalThis.emit = function (stream, type, data, metadata) {
    if (typeof type !== "string" || type.length === 0) fail("emit needs an event type");
    push(stream, type, JSON.stringify(data === undefined ? null : data), metadata, false);
  };
  globalThis.linkTo = function (stream, event, metadata) {
    if (event === null || typeof event !== "object" || typeof event.streamId !== "string") fail("linkTo needs an event");
    push(stream, "$>", event.sequenceNumber + "@" + event.streamId, metadata, true);
  };
  function init(name) {
    var h = def.handlers[name];
    return typeof h === "function" ? h() : {};
  }
  function stateOf(key) {
    if (!Object.prototype.hasOwnProperty.call(states, key)) states[key] = init("$init");
    return states[key];
  }
  function result(state) {
    var value = state;
    for (var i = 0; i < def.shape.length; i++) {
      var step = def.shape[i];
      if (step.filter) { if (!step.filter(value)) return null; }
      else value = step.map(value);
    }
    return value;
  }
  function event(raw) {
    var data = raw.d;
    return {
      isJson: raw.j, data: data, body: data, bodyRaw: raw.j ? JSON.stringify(data) : raw.r,
      eventType: raw.t, streamId: raw.s, sequenceNumber: raw.v, position: raw.p,
      eventId: raw.id, metadata: raw.m, metadataRaw: raw.m === null ? "" : JSON.stringify(raw.m),
      linkMetadata: null, partition: ""
    };
  }
  function handle(raw) {
    var h = def.handlers[raw.t];
    if (typeof h !== "function") {
      if (raw.t.charAt(0) === "$") return false;
      h = def.handlers.$any;
      if (typeof h !== "function") return false;
    }
    var e = event(raw);
    var key = "";
    if (def.partition === "stream") key = raw.s;
    else if (def.partition !== null) {
      key = def.partition(e);
      if (key === undefined || key === null) return false;
      key = String(key);
    }
    e.partition = key;
    var biState = typeof def.handlers.$initShared === "function";
    if (biState && shared === undefined) shared = def.handlers.$initShared();
    var state = stateOf(key);
    var out = h(biState ? [state, shared] : state, e);
    if (biState) {
      if (Array.isArray(out) && out.length === 2) { states[key] = out[0]; shared = out[1]; }
    } else if (out !== undefined) states[key] = out;
    touched[key] = true;
    if (biState) touched["$shared"] = true;
    return true;
  }
  return {
    describe: function (emit) {
      emitEnabled = emit;
      if (def === null) fail("the query selects no source: call fromAll(), fromStream(), fromStreams() or fromCategory()");
      var types = Object.keys(def.handlers).filter(function (k) { return k.charAt(0) !== "$" || k === "$>"; });
      return JSON.stringify({
        kind: def.kind, names: def.names, types: types,
        any: typeof def.handlers.$any === "function",
        partitioned: def.partition !== null,
        biState: typeof def.handlers.$initShared === "function"
      });
    },
    load: function (json) {
      var loaded = JSON.parse(json);
      states = loaded.states;
      shared = loaded.shared === null ? undefined : loaded.shared;
      return "loaded";
    },
    process: function (json) {
      var batch = JSON.parse(json);
      emits = []; touched = {};
      var processed = 0;
      for (var i = 0; i < batch.length; i++) {
        current = i;
        if (handle(batch[i])) processed++;
      }
      current = -1;
      var parts = [];
      Object.keys(touched).forEach(function (key) {
        if (key === "$shared") return;
        var state = states[key];
        parts.push([key, JSON.stringify(state === undefined ? null : state), JSON.stringify(result(state) === undefined ? null : result(state))]);
      });
      var sharedOut = touched["$shared"] ? JSON.stringify(shared === undefined ? null : shared) : null;
      return JSON.stringify({ processed: processed, emits: emits, parts: parts, shared: sharedOut });
    },
    current: function () { return current; }
  };
})();
