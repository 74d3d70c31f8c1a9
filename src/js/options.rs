//! Parsing and validating the options JavaScript passes in (policy, `put`
//! options, run options) from a plain value tree, so that every message names
//! the option at fault and nothing a caller passes can panic. Native code can
//! test and fuzz it without a JS engine; the wasm binding converts `JsValue`s
//! into [`OptValue`]s.

use crate::error::Quoted;
use crate::vecmap::VecMap;
use std::fmt;

use crate::model::{is_blob_id, Millis};
use crate::plan::Mode;
use crate::policy::{GroupRule, Policy, Rules};
use crate::schedule::{ScheduleConfig, DAY_MS};
use crate::sweeper::{Config, PutOptions, Shard};

/// Largest integer a JS number holds exactly.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A JavaScript value as far as option parsing cares.
#[derive(Clone, Debug, PartialEq)]
pub enum OptValue {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<OptValue>),
    Object(Vec<(String, OptValue)>),
    Function,
    /// Anything else (symbol, bigint, class instance...), by its type name.
    Other(String),
}

impl OptValue {
    fn describe(&self) -> String {
        match self {
            OptValue::Undefined => "undefined".into(),
            OptValue::Null => "null".into(),
            OptValue::Bool(b) => b.to_string(),
            OptValue::Number(n) => js_number(*n),
            OptValue::String(s) => Quoted(s).to_string(),
            OptValue::Array(_) => "an array".into(),
            OptValue::Object(_) => "an object".into(),
            OptValue::Function => "a function".into(),
            OptValue::Other(t)
                if t.starts_with(['A', 'E', 'I', 'O', 'U']) && !t.starts_with("Ui") =>
            {
                format!("an {t}")
            }
            OptValue::Other(t) => format!("a {t}"),
        }
    }

    fn is_absent(&self) -> bool {
        matches!(self, OptValue::Undefined)
    }
}

/// A number the way JavaScript prints it: `42`, `1.5`, `Infinity`, `NaN`.
/// In the .wasm, JavaScript's own `String(n)` (`1e+21`), so that no float
/// formatter is compiled in.
#[cfg(target_arch = "wasm32")]
pub fn js_number(n: f64) -> String {
    js_sys::Number::from(n)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}

/// A number the way JavaScript prints it: `42`, `1.5`, `Infinity`, `NaN`;
/// natively with Rust's digits (`1000000000000000000000` for `1e+21`).
#[cfg(not(target_arch = "wasm32"))]
pub fn js_number(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{n}")
    }
}

/// An option that is missing, mistyped or out of range; the message names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError(pub String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionError {}

type Result<T> = std::result::Result<T, OptionError>;

fn err<T>(msg: String) -> Result<T> {
    Err(OptionError(msg))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields of an options object, checked against the names it may have.
struct Fields<'a> {
    path: String,
    fields: VecMap<&'a str, &'a OptValue>,
}

impl<'a> Fields<'a> {
    /// `value` must be undefined (no options) or a plain object with only `known` keys.
    fn new(value: &'a OptValue, path: &str, known: &[&str]) -> Result<Fields<'a>> {
        let fields = match value {
            OptValue::Undefined | OptValue::Null => VecMap::new(),
            OptValue::Object(kv) => {
                let mut fields = VecMap::new();
                for (k, v) in kv {
                    if !known.contains(&k.as_str()) {
                        return err(format!(
                            "{}: unknown option {}; the options are {}",
                            if path.is_empty() { "options" } else { path },
                            Quoted(k),
                            known.join(", ")
                        ));
                    }
                    fields.insert(k.as_str(), v);
                }
                fields
            }
            other => {
                return err(format!(
                    "{} must be an object, got {}",
                    if path.is_empty() { "options" } else { path },
                    other.describe()
                ))
            }
        };
        Ok(Fields {
            path: path.to_string(),
            fields,
        })
    }

    fn get(&self, key: &str) -> Option<&'a OptValue> {
        self.fields.get(key).copied().filter(|v| !v.is_absent())
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn whole(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| whole_number(v, &self.path(key)))
            .transpose()
    }

    /// A whole number from `lo` to `hi`: one message for every value
    /// outside (1.5 and 0 alike).
    fn whole_in(&self, key: &str, lo: u64, hi: u64) -> Result<Option<u64>> {
        self.whole_in_as(key, lo, hi, "")
    }

    /// `whole_in`, its message saying what `hi` is (`note`: " (a year)").
    fn whole_in_as(&self, key: &str, lo: u64, hi: u64, note: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(OptValue::Number(n))
                if n.fract() == 0.0 && (lo as f64..=hi as f64).contains(n) =>
            {
                Ok(Some(*n as u64))
            }
            Some(v) => {
                let hi = if hi as f64 >= MAX_SAFE_INTEGER {
                    "2^53 - 1".into()
                } else {
                    hi.to_string()
                };
                err(format!(
                    "{} must be a whole number from {lo} to {hi}{note}, got {}",
                    self.path(key),
                    v.describe()
                ))
            }
        }
    }

    fn boolean(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(OptValue::Bool(b)) => Ok(*b),
            Some(v) => err(format!(
                "{} must be true or false, got {}",
                self.path(key),
                v.describe()
            )),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(OptValue::String(s)) => Ok(Some(s.clone())),
            Some(v) => err(format!(
                "{} must be a string, got {}",
                self.path(key),
                v.describe()
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(OptValue::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    OptValue::String(s) => Ok(s.clone()),
                    v => err(format!(
                        "{}[{i}] must be a string, got {}",
                        self.path(key),
                        v.describe()
                    )),
                })
                .collect(),
            Some(v) => err(format!(
                "{} must be an array of strings, got {}",
                self.path(key),
                v.describe()
            )),
        }
    }
}

/// A whole number of milliseconds, bytes or items: finite, integral, 0 ≤ n ≤ 2^53−1.
pub fn whole_number(v: &OptValue, path: &str) -> Result<u64> {
    match v {
        OptValue::Number(n)
            if n.is_finite() && n.fract() == 0.0 && *n >= 0.0 && *n <= MAX_SAFE_INTEGER =>
        {
            Ok(*n as u64)
        }
        OptValue::Number(n) if *n < 0.0 => err(format!(
            "{path} must not be negative, got {}",
            js_number(*n)
        )),
        v => err(format!(
            "{path} must be a whole number from 0 to 2^53 - 1 (Number.MAX_SAFE_INTEGER), got {}",
            v.describe()
        )),
    }
}

const RULE_KEYS: [&str; 5] = [
    "maxAgeMs",
    "maxEntries",
    "maxBytes",
    "lowWatermark",
    "groups",
];

fn parse_rules(f: &Fields<'_>) -> Result<Rules> {
    let low_watermark = match f.get("lowWatermark") {
        None => None,
        Some(OptValue::Number(n)) if *n > 0.0 && *n <= 1.0 => Some(*n),
        Some(v) => {
            return err(format!(
                "{} must be a number above 0 and at most 1, got {}",
                f.path("lowWatermark"),
                v.describe()
            ))
        }
    };
    let mut groups = VecMap::new();
    if let Some(g) = f.get("groups") {
        let path = f.path("groups");
        let OptValue::Object(kv) = g else {
            return err(format!(
                "{path} must be an object of {{ name: {{ keepLast }} }}, got {}",
                g.describe()
            ));
        };
        for (name, rule) in kv {
            let rf = Fields::new(rule, &join(&path, name), &["keepLast"])?;
            let Some(keep_last) = rf.whole("keepLast")? else {
                return err(format!("{} is required", rf.path("keepLast")));
            };
            groups.insert(name.clone(), GroupRule { keep_last });
        }
    }
    Ok(Rules {
        max_age_ms: f.whole("maxAgeMs")?,
        max_entries: f.whole("maxEntries")?,
        max_bytes: f.whole("maxBytes")?,
        low_watermark,
        groups,
    })
}

/// The `policy` object of SPEC §8.
pub fn parse_policy(v: &OptValue) -> Result<Policy> {
    let mut known = RULE_KEYS.to_vec();
    known.extend(["orphanGraceMs", "tempMaxAgeMs", "namespaces"]);
    let f = Fields::new(v, "policy", &known)?;
    let mut policy = Policy {
        rules: parse_rules(&f)?,
        ..Policy::default()
    };
    if let Some(ms) = f.whole("orphanGraceMs")? {
        policy.orphan_grace_ms = ms;
    }
    if let Some(ms) = f.whole("tempMaxAgeMs")? {
        policy.temp_max_age_ms = ms;
    }
    if let Some(ns) = f.get("namespaces") {
        let path = f.path("namespaces");
        let OptValue::Object(kv) = ns else {
            return err(format!(
                "{path} must be an object of {{ namespace: rules }}, got {}",
                ns.describe()
            ));
        };
        for (name, rules) in kv {
            let rf = Fields::new(rules, &join(&path, name), &RULE_KEYS)?;
            let rules = parse_rules(&rf)?;
            if rules.low_watermark.is_some()
                && policy.rules.overridden_by(&rules).max_bytes.is_none()
            {
                return err(format!(
                    "{} needs maxBytes, here or in policy: it is the fraction of maxBytes a run frees down to",
                    rf.path("lowWatermark")
                ));
            }
            policy.namespaces.insert(name.clone(), rules);
        }
    }
    if policy.rules.low_watermark.is_some() && policy.rules.max_bytes.is_none() {
        return err("policy.lowWatermark needs policy.maxBytes: it is the fraction of maxBytes a run frees down to".into());
    }
    Ok(policy)
}

/// The `schedule` option of `new Sweeper` (SPEC §4); `onRun` (a function)
/// is read by the binding.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleOptions {
    pub config: ScheduleConfig,
    /// `None`: the store's own lock name.
    pub lock_name: Option<String>,
    /// Request a full run when storage usage passes this fraction of the quota; 0 = never.
    pub storage_fraction: f64,
    /// After each scheduled full run, verify the next of this many shards of
    /// the blobs (the rolling audit); 0 = never.
    pub audit_shards: u32,
}

/// Longest `periodMs`, `debounceMs`, `maxWaitMs` and `sliceMs`: a year.
const MAX_SCHEDULE_MS: u64 = 365 * DAY_MS;

/// Most shards the rolling audit splits the blobs into.
pub const MAX_AUDIT_SHARDS: u64 = 1_000_000;

/// `schedule`: absent or `null` means no background runs but those
/// `request()` asks for (`schedule: on ? {...} : null` turns them off).
pub fn parse_schedule(v: &OptValue) -> Result<Option<ScheduleOptions>> {
    if v.is_absent() || matches!(v, OptValue::Null) {
        return Ok(None);
    }
    let f = Fields::new(
        v,
        "schedule",
        &[
            "periodMs",
            "debounceMs",
            "maxWaitMs",
            "runOnStart",
            "autoAfterWrites",
            "lockName",
            "sliceMs",
            "storageFraction",
            "retryMs",
            "retryMaxMs",
            "onRun",
            "auditShards",
        ],
    )?;
    let mut config = ScheduleConfig::default();
    let ms = |key: &str, into: &mut u64| -> Result<()> {
        if let Some(n) = f.whole_in_as(key, 0, MAX_SCHEDULE_MS, " (a year)")? {
            *into = n;
        }
        Ok(())
    };
    ms("periodMs", &mut config.period_ms)?;
    // Of a pair, one given moves the other's default out of its way (a
    // maxWaitMs of 500 lowers the default debounce to 500, a debounceMs of
    // 20 s raises the default cap to 20 s); two given must agree.
    ms("maxWaitMs", &mut config.max_wait_ms)?;
    ms("retryMaxMs", &mut config.retry_max_ms)?;
    if f.get("debounceMs").is_none() {
        config.debounce_ms = config.debounce_ms.min(config.max_wait_ms);
    }
    if f.get("retryMs").is_none() {
        config.retry_base_ms = config.retry_base_ms.min(config.retry_max_ms);
    }
    ms("debounceMs", &mut config.debounce_ms)?;
    if f.get("maxWaitMs").is_none() {
        config.max_wait_ms = config.max_wait_ms.max(config.debounce_ms);
    }
    ms("retryMs", &mut config.retry_base_ms)?;
    if f.get("retryMaxMs").is_none() {
        config.retry_max_ms = config.retry_max_ms.max(config.retry_base_ms);
    }
    ms("sliceMs", &mut config.slice_ms)?;
    if config.retry_max_ms < config.retry_base_ms {
        return err(format!(
            "schedule.retryMaxMs must be at least options.schedule.retryMs ({}), got {}",
            config.retry_base_ms, config.retry_max_ms
        ));
    }
    if config.max_wait_ms < config.debounce_ms {
        return err(format!(
            "schedule.maxWaitMs must be at least options.schedule.debounceMs ({}), got {}",
            config.debounce_ms, config.max_wait_ms
        ));
    }
    config.run_on_start = f.boolean("runOnStart")?;
    config.auto_after_writes = f.whole("autoAfterWrites")?.unwrap_or(0);
    let lock_name = f.string("lockName")?;
    if lock_name.as_deref() == Some("") {
        return err("schedule.lockName must be a non-empty string, got \"\"".into());
    }
    let storage_fraction = match f.get("storageFraction") {
        None => 0.8,
        Some(OptValue::Number(n)) if (0.0..=1.0).contains(n) => *n,
        Some(v) => {
            return err(format!(
                "schedule.storageFraction must be a number from 0 to 1 (0 = never check), got {}",
                v.describe()
            ))
        }
    };
    match f.get("onRun") {
        None | Some(OptValue::Function) => {}
        Some(v) => {
            return err(format!(
                "schedule.onRun must be a function, got {}",
                v.describe()
            ))
        }
    }
    let audit_shards = f.whole_in("auditShards", 0, MAX_AUDIT_SHARDS)?.unwrap_or(0) as u32;
    Ok(Some(ScheduleOptions {
        config,
        lock_name,
        storage_fraction,
        audit_shards,
    }))
}

/// The options of `new Sweeper(store, options)`, but the clock (a function, read by the binding).
pub fn parse_sweeper_options(v: &OptValue) -> Result<(Policy, Config, Option<ScheduleOptions>)> {
    let f = Fields::new(
        v,
        "",
        &["policy", "clock", "schedule", "batchSize", "maxValueBytes"],
    )?;
    match f.get("clock") {
        None | Some(OptValue::Function) => {}
        Some(v) => {
            return err(format!(
                "clock must be a function returning milliseconds, got {}",
                v.describe()
            ))
        }
    }
    let policy = parse_policy(f.get("policy").unwrap_or(&OptValue::Undefined))?;
    let mut config = Config::default();
    if let Some(n) = f.whole_in("batchSize", 1, 100_000)? {
        config.exec.batch_size = n as usize;
    }
    if let Some(n) = f.whole_in_as("maxValueBytes", 0, MAX_VALUE_BYTES as u64, " (256 MiB)")? {
        config.max_value_bytes = n as usize;
    }
    let schedule = parse_schedule(f.get("schedule").unwrap_or(&OptValue::Undefined))?;
    Ok((policy, config, schedule))
}

/// The largest `maxValueBytes`, and the most one `putMany` takes in all. A
/// value is copied into the module's memory (4 GiB) and encoded there, a
/// string's UTF-8 up to three times its length: at this size the copies
/// still fit.
pub const MAX_VALUE_BYTES: usize = 1 << 28;

/// The options of `put`: the namespace and the entry's options. `now` turns `ttlMs` into a time.
pub fn parse_put_options(v: &OptValue) -> Result<(String, PutOptions)> {
    put_options(v, "put options", &[])
}

/// One item of `putMany`: the put options beside its `key` and `value`
/// (which the caller reads).
pub fn parse_put_item(v: &OptValue, index: usize) -> Result<(String, PutOptions)> {
    if !matches!(v, OptValue::Object(_)) {
        return err(format!(
            "putMany items[{index}] must be an object {{ key, value, ...options }}, got {}",
            v.describe()
        ));
    }
    put_options(v, &format!("putMany items[{index}]"), &["key", "value"])
}

fn put_options(v: &OptValue, path: &str, also: &[&str]) -> Result<(String, PutOptions)> {
    let mut known = vec![
        "namespace",
        "ttlMs",
        "expiresAt",
        "group",
        "pinned",
        "locked",
        "dependent",
        "refs",
        "blobs",
        "size",
    ];
    known.extend_from_slice(also);
    let f = Fields::new(v, path, &known)?;
    let blobs = f.strings("blobs")?;
    if let Some(b) = blobs.iter().find(|b| !is_blob_id(b)) {
        return err(format!(
            "{path}.blobs: {} is not a blob id (64 lower-case hex digits, as returned by putBlob)",
            Quoted(b)
        ));
    }
    let refs = f.strings("refs")?;
    if refs.iter().any(String::is_empty) {
        return err(format!("{path}.refs must not contain an empty key"));
    }
    if f.get("ttlMs").is_some() && f.get("expiresAt").is_some() {
        return err(format!(
            "{path}: ttlMs and expiresAt cannot both be set; pass one"
        ));
    }
    let opts = PutOptions {
        ttl_ms: f.whole("ttlMs")?,
        expires_at: f.whole("expiresAt")?,
        group: f.string("group")?,
        pinned: f.boolean("pinned")?,
        locked: f.boolean("locked")?,
        dependent: f.boolean("dependent")?,
        refs,
        blobs,
        size: f.whole("size")?,
    };
    Ok((namespace(&f)?, opts))
}

fn namespace(f: &Fields<'_>) -> Result<String> {
    let ns = f.string("namespace")?.unwrap_or_default();
    no_nul(&ns, &f.path("namespace"))?;
    Ok(ns)
}

/// Refuses a namespace holding U+0000: on a key–value store it separates
/// the namespace from the key in a record's name, so "a\0b" with key "k"
/// would name namespace "a"'s entry "b\0k". Refused on every store alike,
/// so that a store's entries can move to any other.
pub fn no_nul(ns: &str, path: &str) -> Result<()> {
    if ns.bytes().any(|b| b == 0) {
        return err(format!(
            "{path} must not contain U+0000, which separates a namespace from its key on key–value stores, got {}",
            Quoted(ns)
        ));
    }
    Ok(())
}

/// The options of `get`, `delete` and `detail`: the namespace and `includeExpired`.
pub fn parse_key_options(v: &OptValue, what: &str) -> Result<(String, bool)> {
    // delete() deletes an entry expired or not: it takes no includeExpired.
    let known: &[&str] = if what == "delete" {
        &["namespace"]
    } else {
        &["namespace", "includeExpired"]
    };
    let f = Fields::new(v, &format!("{what} options"), known)?;
    Ok((namespace(&f)?, f.boolean("includeExpired")?))
}

/// Most entries `history` returns.
pub const MAX_HISTORY: u64 = 10_000;

/// The options of `history`: a namespace (all when absent) and how many (default 50).
pub fn parse_history_options(v: &OptValue) -> Result<(Option<String>, usize)> {
    let f = Fields::new(v, "history options", &["namespace", "limit"])?;
    let limit = f.whole_in("limit", 1, MAX_HISTORY)?.unwrap_or(50) as usize;
    let ns = f.string("namespace")?;
    no_nul(ns.as_deref().unwrap_or(""), &f.path("namespace"))?;
    Ok((ns, limit))
}

/// The options of `resolvePrefix` and `deleteNamespace`: the namespace.
pub fn parse_namespace_options(v: &OptValue, what: &str) -> Result<String> {
    let f = Fields::new(v, &format!("{what} options"), &["namespace"])?;
    namespace(&f)
}

/// The options of `prune`: `olderThanMs`, required.
pub fn parse_prune_options(v: &OptValue) -> Result<Millis> {
    let f = Fields::new(v, "prune options", &["olderThanMs"])?;
    match f.whole("olderThanMs")? {
        Some(ms) => Ok(ms),
        None => err("prune options.olderThanMs is required: entries not updated for that many milliseconds are deleted".into()),
    }
}

/// The options of `health`: `maxBacklog`, the garbage a full plan may find
/// before health warns (none: no plan is made).
pub fn parse_health_options(v: &OptValue) -> Result<Option<u64>> {
    Fields::new(v, "health options", &["maxBacklog"])?.whole("maxBacklog")
}

/// The options of `verify`: `shard: { index, count }` and `repair`.
pub fn parse_verify_options(v: &OptValue) -> Result<(Option<Shard>, bool)> {
    let f = Fields::new(v, "verify options", &["shard", "repair"])?;
    let shard = match f.get("shard") {
        None => None,
        Some(s) => {
            let sf = Fields::new(s, &f.path("shard"), &["index", "count"])?;
            let (Some(index), Some(count)) = (sf.whole("index")?, sf.whole("count")?) else {
                return err(format!(
                    "{} must be {{ index, count }} with both set, got {}",
                    f.path("shard"),
                    s.describe()
                ));
            };
            if count == 0 || count > u64::from(u32::MAX) || index >= count {
                return err(format!(
                    "{} must have 0 <= index < count <= 4294967295, got index {index} and count {count}",
                    f.path("shard")
                ));
            }
            Some(Shard {
                index: index as u32,
                count: count as u32,
            })
        }
    };
    Ok((shard, f.boolean("repair")?))
}

/// The options of `keys` and `entries`: which keys, and where a page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOptions {
    pub namespace: String,
    pub prefix: String,
    pub limit: Option<u64>,
    pub after: Option<String>,
}

/// Most keys one page of `keys`/`entries` reads (the iterators page on).
pub const MAX_PAGE: u64 = 10_000;

pub fn parse_list_options(v: &OptValue, what: &str) -> Result<ListOptions> {
    let f = Fields::new(
        v,
        &format!("{what} options"),
        &["namespace", "prefix", "limit", "after"],
    )?;
    let limit = f.whole_in("limit", 1, MAX_SAFE_INTEGER as u64)?;
    Ok(ListOptions {
        namespace: namespace(&f)?,
        prefix: f.string("prefix")?.unwrap_or_default(),
        limit,
        after: f.string("after")?,
    })
}

/// The options of `plan` and `run`, but the signal and callback (read by the binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    pub mode: Mode,
    pub budget_ms: Option<Millis>,
    /// Most backend calls the run may make (a kvStore's list pages, reads,
    /// writes): an edge request's operation limit.
    pub max_ops: Option<u64>,
    /// How long the run lease of a kvStore is taken for.
    pub lease_ms: Option<Millis>,
}

pub fn parse_run_options(v: &OptValue, what: &str) -> Result<RunOptions> {
    // plan() honours a mode and a signal; run() a budget and progress too.
    let known: &[&str] = if what == "plan" {
        &["mode", "signal"]
    } else {
        &[
            "mode",
            "signal",
            "budgetMs",
            "maxOps",
            "leaseMs",
            "onProgress",
        ]
    };
    let f = Fields::new(v, &format!("{what} options"), known)?;
    let mode = match f.get("mode") {
        None => Mode::Full,
        Some(OptValue::String(s)) if s == "full" => Mode::Full,
        Some(OptValue::String(s)) if s == "light" => Mode::Light,
        Some(v) => {
            return err(format!(
                "{} must be \"light\" or \"full\", got {}",
                f.path("mode"),
                v.describe()
            ))
        }
    };
    match f.get("onProgress") {
        None | Some(OptValue::Function) => {}
        Some(v) => {
            return err(format!(
                "{} must be a function, got {}",
                f.path("onProgress"),
                v.describe()
            ))
        }
    }
    match f.get("signal") {
        None => {}
        Some(OptValue::Other(t)) if t == "AbortSignal" => {}
        Some(v) => {
            return err(format!(
                "{} must be an AbortSignal, got {}",
                f.path("signal"),
                v.describe()
            ))
        }
    }
    let max_ops = f.whole_in("maxOps", 1, MAX_SAFE_INTEGER as u64)?;
    let lease_ms = f.whole_in("leaseMs", 1, MAX_SAFE_INTEGER as u64)?;
    Ok(RunOptions {
        mode,
        budget_ms: f.whole("budgetMs")?,
        max_ops,
        lease_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kv: &[(&str, OptValue)]) -> OptValue {
        OptValue::Object(kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn full_policy_parses() {
        let p = parse_policy(&obj(&[
            ("maxAgeMs", OptValue::Number(1000.0)),
            ("maxBytes", OptValue::Number(1e6)),
            ("lowWatermark", OptValue::Number(0.5)),
            (
                "groups",
                obj(&[("nightly", obj(&[("keepLast", OptValue::Number(5.0))]))]),
            ),
            (
                "namespaces",
                obj(&[("u", obj(&[("maxEntries", OptValue::Number(3.0))]))]),
            ),
            ("orphanGraceMs", OptValue::Number(0.0)),
        ]))
        .unwrap();
        assert_eq!(p.rules.max_age_ms, Some(1000));
        assert_eq!(p.rules.groups["nightly"].keep_last, 5);
        assert_eq!(p.rules_for("u").max_entries, Some(3));
        assert_eq!(p.orphan_grace_ms, 0);
    }

    #[test]
    fn contradictory_and_incomplete_options_are_refused() {
        let e = parse_policy(&obj(&[("lowWatermark", OptValue::Number(0.5))])).unwrap_err();
        assert!(
            e.0.contains("policy.lowWatermark needs policy.maxBytes"),
            "{e}"
        );
        let ns = obj(&[("u", obj(&[("lowWatermark", OptValue::Number(0.5))]))]);
        let e = parse_policy(&obj(&[("namespaces", ns.clone())])).unwrap_err();
        assert!(
            e.0.contains("policy.namespaces.u.lowWatermark needs maxBytes"),
            "{e}"
        );
        // The namespace's fraction applies to the policy's maxBytes.
        parse_policy(&obj(&[
            ("maxBytes", OptValue::Number(10.0)),
            ("namespaces", ns),
        ]))
        .unwrap();
        let both = obj(&[
            ("ttlMs", OptValue::Number(5.0)),
            ("expiresAt", OptValue::Number(9.0)),
        ]);
        let e = parse_put_options(&both).unwrap_err();
        assert!(
            e.0.contains("ttlMs and expiresAt cannot both be set"),
            "{e}"
        );
        let e =
            parse_run_options(&obj(&[("budgetMs", OptValue::Number(5.0))]), "plan").unwrap_err();
        assert!(e.0.contains("unknown option \"budgetMs\""), "{e}");
        let plain = obj(&[("signal", obj(&[]))]);
        let e = parse_run_options(&plain, "run").unwrap_err();
        assert!(
            e.0.contains("run options.signal must be an AbortSignal, got an object"),
            "{e}"
        );
        let e = parse_key_options(&obj(&[("includeExpired", OptValue::Bool(true))]), "delete")
            .unwrap_err();
        assert!(
            e.0.contains("delete options: unknown option \"includeExpired\""),
            "{e}"
        );
        let signal = obj(&[("signal", OptValue::Other("AbortSignal".into()))]);
        parse_run_options(&signal, "plan").unwrap();
        let e = parse_put_options(&obj(&[("ttlMs", OptValue::Number(2f64.powi(53)))])).unwrap_err();
        assert!(
            e.0.contains("from 0 to 2^53 - 1 (Number.MAX_SAFE_INTEGER), got 9007199254740992"),
            "{e}"
        );
        let e = parse_put_options(&obj(&[("ttlMs", OptValue::Number(f64::INFINITY))])).unwrap_err();
        assert!(e.0.ends_with("got Infinity"), "{e}");
    }

    #[test]
    fn errors_name_the_option_at_fault() {
        let cases = [
            (
                obj(&[("maxAgeMs", OptValue::Number(-1.0))]),
                "policy.maxAgeMs must not be negative",
            ),
            (
                obj(&[("maxAge", OptValue::Number(1.0))]),
                "unknown option \"maxAge\"",
            ),
            (
                obj(&[("maxBytes", OptValue::Number(1.5))]),
                "policy.maxBytes must be a whole number",
            ),
            (
                obj(&[("lowWatermark", OptValue::Number(2.0))]),
                "policy.lowWatermark must be a number above 0",
            ),
            (
                obj(&[("groups", obj(&[("g", obj(&[]))]))]),
                "policy.groups.g.keepLast is required",
            ),
            (OptValue::String("x".into()), "policy must be an object"),
        ];
        for (v, want) in cases {
            let e = parse_policy(&v).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn put_options_reject_negative_ttl_and_bad_blob_ids() {
        let e = parse_put_options(&obj(&[("ttlMs", OptValue::Number(-5.0))])).unwrap_err();
        assert!(
            e.0.contains("put options.ttlMs must not be negative"),
            "{e}"
        );
        let e = parse_put_options(&obj(&[(
            "blobs",
            OptValue::Array(vec![OptValue::String("abc".into())]),
        )]))
        .unwrap_err();
        assert!(e.0.contains("not a blob id"), "{e}");
        let (ns, o) = parse_put_options(&obj(&[
            ("namespace", OptValue::String("n".into())),
            ("pinned", OptValue::Bool(true)),
        ]))
        .unwrap();
        assert_eq!((ns.as_str(), o.pinned), ("n", true));
    }

    #[test]
    fn run_mode_must_be_light_or_full() {
        assert_eq!(
            parse_run_options(&OptValue::Undefined, "run").unwrap().mode,
            Mode::Full
        );
        let e = parse_run_options(&obj(&[("mode", OptValue::String("fast".into()))]), "run")
            .unwrap_err();
        assert!(
            e.0.contains("run options.mode must be \"light\" or \"full\""),
            "{e}"
        );
    }

    #[test]
    fn nan_and_infinity_are_not_whole_numbers() {
        for n in [f64::NAN, f64::INFINITY, 1e300] {
            assert!(whole_number(&OptValue::Number(n), "x").is_err());
        }
    }
}
