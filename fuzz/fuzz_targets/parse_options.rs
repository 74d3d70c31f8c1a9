//! Fuzz target: the JS-facing option parsing (`kvsweep::js::options`).
//!
//! The wasm binding turns whatever JavaScript passes (`new Sweeper(store,
//! options)`, `put(key, value, options)`, `get`/`delete`/`detail`, `plan`/`run`)
//! into an `OptValue` tree and hands it to the `parse_*` functions. Those must
//! never panic, and must either reject the value with a message naming the
//! option at fault, or return settings that hold the documented invariants.
//!
//! The input is read (with `arbitrary`) as an `OptValue` tree of bounded depth
//! and size, biased toward what reaches deep: object keys are mostly the real
//! option names that belong where the object sits (policy keys inside
//! `policy`, `keepLast` inside a group, ...), values mostly of the kind the
//! option takes, numbers mostly edge values (-1, -0, 0, 0.5, 1, 1e300, NaN,
//! ±Infinity, 2^53 − 1, 2^53, 2^53 + 2, ...), strings mostly "full", "light",
//! a blob id or "". The tree is passed to every parser, both as it is and
//! wrapped where it would sit in a real call (`{ policy: tree }`).
//!
//! Checked on every input:
//!
//! * no parser panics (libFuzzer reports a panic as a crash);
//! * parsing is deterministic: a second parse gives the same result (for the
//!   sweeper options, all that the options set: `Config::write_nonce` is
//!   random by design);
//! * an error message is non-empty and starts with the option's path
//!   (`policy…`, `put options…`, `run options…`, or for the sweeper options a
//!   top-level option name);
//! * `Ok` is returned only for `undefined`, `null` or an object.
//!
//! And on `Ok`:
//!
//! * every whole number (ages, counts, bytes, `keepLast`, `ttlMs`,
//!   `expiresAt`, `budgetMs`) is ≤ 2^53 − 1 and equals the number given
//!   (the last one, when a key is repeated), or the default when absent;
//! * `lowWatermark` is in (0, 1] and equals the number given;
//! * every group and namespace named in the input is in the result, and every
//!   group has its `keepLast`;
//! * `batchSize` is in 1..=100000; `maxValueBytes` is the number given;
//! * `put` blobs are all blob ids, refs contain no empty key, and the booleans
//!   and strings are the ones given;
//! * `mode` is the one given ("light" or "full", full by default).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use kvsweep::js::options::{
    parse_key_options, parse_policy, parse_put_options, parse_run_options, parse_sweeper_options,
    OptValue, OptionError, RunOptions, MAX_SAFE_INTEGER,
};
use kvsweep::{Config, Mode, Policy, PutOptions, Rules};
use libfuzzer_sys::fuzz_target;

const MAX_SAFE: u64 = (1 << 53) - 1;
const MAX_DEPTH: u32 = 7;
const MAX_ITEMS: usize = 6;
const BLOB_ID: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

/// Every option name the parsers know, at any level.
const KEYS: &[&str] = &[
    "maxAgeMs",
    "maxEntries",
    "maxBytes",
    "lowWatermark",
    "groups",
    "keepLast",
    "orphanGraceMs",
    "tempMaxAgeMs",
    "namespaces",
    "policy",
    "clock",
    "schedule",
    "batchSize",
    "maxValueBytes",
    "namespace",
    "ttlMs",
    "expiresAt",
    "group",
    "pinned",
    "locked",
    "dependent",
    "refs",
    "blobs",
    "includeExpired",
    "mode",
    "signal",
    "budgetMs",
    "onProgress",
];

const NUMBERS: &[f64] = &[
    -1.0,
    -0.0,
    0.0,
    0.5,
    1.0,
    2.0,
    1e300,
    -1e300,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    MAX_SAFE_INTEGER,             // 2^53 − 1
    9_007_199_254_740_992.0,      // 2^53
    9_007_199_254_740_994.0,      // 2^53 + 2
    18_446_744_073_709_551_616.0, // 2^64
    100_000.0,
    100_001.0,
    1.0 - f64::EPSILON,
    1.0 + f64::EPSILON,
    f64::MIN_POSITIVE,
    5e-324,
    1.5,
];

const STRINGS: &[&str] = &["", "full", "light", BLOB_ID, "nightly", "u", "a"];

/// Where in an options object a value sits, so that most keys and values are
/// the ones that belong there and the parsers get past their first check.
#[derive(Clone, Copy)]
enum Ctx {
    /// Top level (any parser) or somewhere unknown: any option name.
    Any,
    /// A `policy` object.
    Policy,
    /// The rules of one namespace (`policy.namespaces.<name>`).
    Rules,
    /// `groups` or `namespaces`: an object whose keys are names.
    Names(NamesOf),
    /// `groups.<name>`: `{ keepLast }`.
    GroupRule,
}

#[derive(Clone, Copy)]
enum NamesOf {
    Groups,
    Namespaces,
}

const RULE_KEYS: &[&str] = &[
    "maxAgeMs",
    "maxEntries",
    "maxBytes",
    "lowWatermark",
    "groups",
];
const POLICY_KEYS: &[&str] = &[
    "maxAgeMs",
    "maxEntries",
    "maxBytes",
    "lowWatermark",
    "groups",
    "orphanGraceMs",
    "tempMaxAgeMs",
    "namespaces",
];

fn key(u: &mut Unstructured<'_>, ctx: Ctx) -> arbitrary::Result<String> {
    let fitting: &[&str] = match ctx {
        Ctx::Any => KEYS,
        Ctx::Policy => POLICY_KEYS,
        Ctx::Rules => RULE_KEYS,
        Ctx::Names(_) => STRINGS,
        Ctx::GroupRule => &["keepLast"],
    };
    if u.ratio(3u8, 4u8)? {
        Ok((*u.choose(fitting)?).to_string())
    } else if u.ratio(3u8, 4u8)? {
        Ok((*u.choose(KEYS)?).to_string())
    } else {
        String::arbitrary(u)
    }
}

fn number(u: &mut Unstructured<'_>) -> arbitrary::Result<f64> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 | 1 => *u.choose(NUMBERS)?,
        2 => f64::from(u.int_in_range(0u32..=1000)?),
        _ => f64::from_bits(u64::arbitrary(u)?),
    })
}

fn string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    if u.ratio(3u8, 4u8)? {
        Ok((*u.choose(STRINGS)?).to_string())
    } else {
        String::arbitrary(u)
    }
}

/// The kind of value the option `key` takes (inside `ctx`), and where its
/// own fields sit if it is an object.
fn expected(key: &str, ctx: Ctx) -> (u8, Ctx) {
    match (ctx, key) {
        (Ctx::Names(NamesOf::Groups), _) => (KIND_OBJECT, Ctx::GroupRule),
        (Ctx::Names(NamesOf::Namespaces), _) => (KIND_OBJECT, Ctx::Rules),
        (_, "policy") => (KIND_OBJECT, Ctx::Policy),
        (_, "groups") => (KIND_OBJECT, Ctx::Names(NamesOf::Groups)),
        (_, "namespaces") => (KIND_OBJECT, Ctx::Names(NamesOf::Namespaces)),
        (_, "signal") => (KIND_OBJECT, Ctx::Any),
        (_, "pinned" | "locked" | "dependent" | "includeExpired") => (KIND_BOOL, Ctx::Any),
        (_, "namespace" | "group" | "mode") => (KIND_STRING, Ctx::Any),
        (_, "refs" | "blobs") => (KIND_STRINGS, Ctx::Any),
        (_, "clock" | "onProgress" | "schedule") => (KIND_FUNCTION, Ctx::Any),
        _ => (KIND_NUMBER, Ctx::Any),
    }
}

const KIND_BOOL: u8 = 2;
const KIND_NUMBER: u8 = 3;
const KIND_STRING: u8 = 5;
const KIND_FUNCTION: u8 = 6;
const KIND_ARRAY: u8 = 7;
const KIND_OBJECT: u8 = 8;
/// An array of strings (`refs`, `blobs`).
const KIND_STRINGS: u8 = 9;

/// A value of the given kind, or (`kind == None`) of a kind the input picks.
fn value(
    u: &mut Unstructured<'_>,
    depth: u32,
    ctx: Ctx,
    kind: Option<u8>,
) -> arbitrary::Result<OptValue> {
    let kind = match kind {
        // No containers past MAX_DEPTH.
        Some(KIND_ARRAY | KIND_OBJECT | KIND_STRINGS) if depth >= MAX_DEPTH => KIND_NUMBER,
        Some(k) => k,
        None if depth >= MAX_DEPTH => u.int_in_range(0..=KIND_FUNCTION)?,
        None => u.int_in_range(0..=KIND_STRINGS)?,
    };
    Ok(match kind {
        0 => OptValue::Undefined,
        1 => OptValue::Null,
        KIND_BOOL => OptValue::Bool(bool::arbitrary(u)?),
        KIND_NUMBER | 4 => OptValue::Number(number(u)?),
        KIND_STRING => OptValue::String(string(u)?),
        KIND_FUNCTION => {
            if u.ratio(3u8, 4u8)? {
                OptValue::Function
            } else {
                OptValue::Other(
                    (*u.choose(&["symbol", "bigint", "AbortSignal", "Date"])?).to_string(),
                )
            }
        }
        KIND_ARRAY | KIND_STRINGS => {
            let n = u.int_in_range(0..=MAX_ITEMS)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(if kind == KIND_STRINGS && u.ratio(7u8, 8u8)? {
                    OptValue::String(string(u)?)
                } else {
                    value(u, depth + 1, Ctx::Any, None)?
                });
            }
            OptValue::Array(items)
        }
        _ => {
            let n = u.int_in_range(0..=MAX_ITEMS)?;
            let mut kv = Vec::with_capacity(n);
            for _ in 0..n {
                let k = key(u, ctx)?;
                let (want, inner) = expected(&k, ctx);
                // Mostly the kind the option takes; sometimes anything.
                let v = if u.ratio(3u8, 4u8)? {
                    value(u, depth + 1, inner, Some(want))?
                } else {
                    value(u, depth + 1, inner, None)?
                };
                kv.push((k, v));
            }
            OptValue::Object(kv)
        }
    })
}

// ---- reading the input back, as JavaScript would ----

/// The value of `key` in an object, the last one if repeated; `undefined` if absent.
fn field<'a>(v: &'a OptValue, key: &str) -> &'a OptValue {
    match v {
        OptValue::Object(kv) => kv
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map_or(&OptValue::Undefined, |(_, v)| v),
        _ => &OptValue::Undefined,
    }
}

/// What a whole-number option must have parsed to.
fn whole(v: &OptValue, key: &str) -> Option<u64> {
    match field(v, key) {
        OptValue::Undefined => None,
        OptValue::Number(n) => {
            assert!(
                n.is_finite() && n.fract() == 0.0 && *n >= 0.0 && *n <= MAX_SAFE_INTEGER,
                "{key} = {n} was accepted as a whole number"
            );
            Some(*n as u64)
        }
        other => panic!("{key} = {other:?} was accepted as a whole number"),
    }
}

fn flag(v: &OptValue, key: &str) -> bool {
    match field(v, key) {
        OptValue::Undefined | OptValue::Bool(false) => false,
        OptValue::Bool(true) => true,
        other => panic!("{key} = {other:?} was accepted as a boolean"),
    }
}

fn text(v: &OptValue, key: &str) -> Option<String> {
    match field(v, key) {
        OptValue::Undefined => None,
        OptValue::String(s) => Some(s.clone()),
        other => panic!("{key} = {other:?} was accepted as a string"),
    }
}

fn names(v: &OptValue) -> Vec<&str> {
    match v {
        OptValue::Object(kv) => kv.iter().map(|(k, _)| k.as_str()).collect(),
        OptValue::Undefined => Vec::new(),
        other => panic!("{other:?} was accepted as an object of names"),
    }
}

fn assert_object_like(v: &OptValue, what: &str) {
    assert!(
        matches!(
            v,
            OptValue::Undefined | OptValue::Null | OptValue::Object(_)
        ),
        "{what}: {v:?} was accepted as an options object"
    );
}

fn check_error(e: &OptionError, prefixes: &[&str], input: &OptValue) {
    assert!(!e.0.is_empty(), "empty error message for {input:?}");
    assert!(
        prefixes.iter().any(|p| e.0.starts_with(p)),
        "error {:?} does not start with one of {prefixes:?} (input {input:?})",
        e.0
    );
}

// ---- invariants of each parser's result ----

fn check_rules(rules: &Rules, input: &OptValue) {
    assert_object_like(input, "rules");
    assert_eq!(rules.max_age_ms, whole(input, "maxAgeMs"));
    assert_eq!(rules.max_entries, whole(input, "maxEntries"));
    assert_eq!(rules.max_bytes, whole(input, "maxBytes"));
    for n in [rules.max_age_ms, rules.max_entries, rules.max_bytes]
        .into_iter()
        .flatten()
    {
        assert!(n <= MAX_SAFE);
    }
    match (rules.low_watermark, field(input, "lowWatermark")) {
        (None, OptValue::Undefined) => {}
        (Some(w), OptValue::Number(n)) => {
            assert!(w > 0.0 && w <= 1.0, "lowWatermark {w} is out of (0, 1]");
            assert_eq!(w.to_bits(), n.to_bits());
        }
        (got, given) => panic!("lowWatermark {given:?} parsed to {got:?}"),
    }
    let groups = field(input, "groups");
    let given = names(groups);
    for name in &given {
        let rule = rules
            .groups
            .get(*name)
            .unwrap_or_else(|| panic!("group {name:?} is missing from {:?}", rules.groups));
        let keep = whole(field(groups, name), "keepLast")
            .unwrap_or_else(|| panic!("group {name:?} accepted without keepLast"));
        assert_eq!(rule.keep_last, keep, "group {name:?}");
        assert!(rule.keep_last <= MAX_SAFE);
    }
    assert!(
        rules.groups.keys().all(|k| given.contains(&k.as_str())),
        "groups {:?} not all in the input",
        rules.groups.keys()
    );
}

fn check_policy(p: &Policy, input: &OptValue) {
    assert_object_like(input, "policy");
    let defaults = Policy::default();
    check_rules(&p.rules, input);
    assert_eq!(
        p.orphan_grace_ms,
        whole(input, "orphanGraceMs").unwrap_or(defaults.orphan_grace_ms)
    );
    assert_eq!(
        p.temp_max_age_ms,
        whole(input, "tempMaxAgeMs").unwrap_or(defaults.temp_max_age_ms)
    );
    let namespaces = field(input, "namespaces");
    let given = names(namespaces);
    for name in &given {
        let rules = p
            .namespaces
            .get(*name)
            .unwrap_or_else(|| panic!("namespace {name:?} is missing"));
        check_rules(rules, field(namespaces, name));
    }
    assert!(p.namespaces.keys().all(|k| given.contains(&k.as_str())));
}

fn check_sweeper(policy: &Policy, config: &Config, input: &OptValue) {
    assert_object_like(input, "sweeper options");
    assert!(matches!(field(input, "schedule"), OptValue::Undefined));
    assert!(matches!(
        field(input, "clock"),
        OptValue::Undefined | OptValue::Function
    ));
    check_policy(policy, field(input, "policy"));
    let defaults = Config::default();
    let batch = config.exec.batch_size;
    assert!((1..=100_000).contains(&batch), "batchSize {batch}");
    assert_eq!(
        batch as u64,
        whole(input, "batchSize").unwrap_or(defaults.exec.batch_size as u64)
    );
    assert_eq!(config.exec.page_size, defaults.exec.page_size);
    assert_eq!(
        config.max_value_bytes as u64,
        whole(input, "maxValueBytes").unwrap_or(defaults.max_value_bytes as u64)
    );
}

fn check_put(ns: &str, o: &PutOptions, input: &OptValue) {
    assert_object_like(input, "put options");
    assert_eq!(ns, text(input, "namespace").unwrap_or_default());
    assert_eq!(o.ttl_ms, whole(input, "ttlMs"));
    assert_eq!(o.expires_at, whole(input, "expiresAt"));
    assert_eq!(o.group, text(input, "group"));
    assert_eq!(o.pinned, flag(input, "pinned"));
    assert_eq!(o.locked, flag(input, "locked"));
    assert_eq!(o.dependent, flag(input, "dependent"));
    assert!(o.blobs.iter().all(|b| kvsweep::model::is_blob_id(b)));
    assert!(o.refs.iter().all(|r| !r.is_empty()));
    for (key, got) in [("refs", &o.refs), ("blobs", &o.blobs)] {
        let given: Vec<String> = match field(input, key) {
            OptValue::Undefined => Vec::new(),
            OptValue::Array(items) => items
                .iter()
                .map(|v| match v {
                    OptValue::String(s) => s.clone(),
                    other => panic!("{key} item {other:?} was accepted as a string"),
                })
                .collect(),
            other => panic!("{key} = {other:?} was accepted as an array of strings"),
        };
        assert_eq!(got, &given, "{key}");
    }
}

fn check_key(ns: &str, include_expired: bool, input: &OptValue) {
    assert_object_like(input, "key options");
    assert_eq!(ns, text(input, "namespace").unwrap_or_default());
    assert_eq!(include_expired, flag(input, "includeExpired"));
}

fn check_run(r: &RunOptions, input: &OptValue) {
    assert_object_like(input, "run options");
    let mode = match field(input, "mode") {
        OptValue::Undefined => Mode::Full,
        OptValue::String(s) if s == "full" => Mode::Full,
        OptValue::String(s) if s == "light" => Mode::Light,
        other => panic!("mode {other:?} was accepted"),
    };
    assert_eq!(r.mode, mode);
    assert_eq!(r.budget_ms, whole(input, "budgetMs"));
    assert!(matches!(
        field(input, "onProgress"),
        OptValue::Undefined | OptValue::Function
    ));
    assert!(matches!(
        field(input, "signal"),
        OptValue::Undefined | OptValue::Object(_) | OptValue::Other(_)
    ));
}

// ---- every parser on one tree ----

fn check_all(v: &OptValue) {
    let r = parse_policy(v);
    assert_eq!(r, parse_policy(v), "parse_policy is not deterministic");
    match &r {
        Ok(p) => check_policy(p, v),
        Err(e) => check_error(e, &["policy"], v),
    }

    let r = parse_sweeper_options(v);
    // Everything the options set; not the rest of `Config` (its write nonce
    // is drawn at random for each sweeper, on purpose).
    let parsed = |r: &Result<(Policy, Config), OptionError>| {
        r.as_ref()
            .map(|(p, c)| (p.clone(), c.exec, c.max_value_bytes))
            .map_err(Clone::clone)
    };
    assert_eq!(
        parsed(&r),
        parsed(&parse_sweeper_options(v)),
        "parse_sweeper_options is not deterministic"
    );
    match &r {
        Ok((p, c)) => check_sweeper(p, c, v),
        Err(e) => check_error(
            e,
            &[
                "options",
                "schedule",
                "clock",
                "batchSize",
                "maxValueBytes",
                "policy",
            ],
            v,
        ),
    }

    let r = parse_put_options(v);
    assert_eq!(r, parse_put_options(v));
    match &r {
        Ok((ns, o)) => check_put(ns, o, v),
        Err(e) => check_error(e, &["put options"], v),
    }

    for what in ["get", "delete", "detail"] {
        let r = parse_key_options(v, what);
        assert_eq!(r, parse_key_options(v, what));
        match &r {
            Ok((ns, inc)) => check_key(ns, *inc, v),
            Err(e) => check_error(e, &[format!("{what} options").as_str()], v),
        }
    }

    for what in ["plan", "run"] {
        let r = parse_run_options(v, what);
        assert_eq!(r, parse_run_options(v, what));
        match &r {
            Ok(o) => check_run(o, v),
            Err(e) => check_error(e, &[format!("{what} options").as_str()], v),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // Mostly an options object; sometimes any value at all.
    let kind = if u.ratio(7u8, 8u8).unwrap_or(false) {
        Some(KIND_OBJECT)
    } else {
        None
    };
    let Ok(v) = value(&mut u, 0, Ctx::Any, kind) else {
        return;
    };
    check_all(&v);
    // Where the tree would sit inside a bigger options object.
    check_all(&OptValue::Object(vec![("policy".to_string(), v.clone())]));
    check_all(&OptValue::Object(vec![(
        "namespaces".to_string(),
        OptValue::Object(vec![("u".to_string(), v)]),
    )]));
});
