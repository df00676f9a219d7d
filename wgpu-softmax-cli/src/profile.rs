//! Device profiles as JSON (what `info --json` prints and `plan --profile` reads), and
//! explanations of plans as JSON and as text.
//!
//! The format is one flat object: the adapter's identity, a `limits` object and a
//! `features` object, and the subgroup sizes. Every field is required; a field the format
//! does not have is refused, so that a misspelt one is not silently ignored.

use std::fmt::{self, Write as _};

use serde_json::Value;
use wgpu_softmax::wgpu;
use wgpu_softmax::{DType, DeviceProfile, PlanExplanation, ProfileFeatures, ProfileLimits};

/// Why a profile could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileError {
    /// Not JSON at all.
    Syntax {
        /// Where (1-based).
        line: usize,
        /// Where (1-based).
        column: usize,
        /// The parser's words.
        message: String,
    },
    /// A required field is absent.
    MissingField(String),
    /// A field holds a value of another JSON type.
    WrongType {
        /// The field, as `limits.max_buffer_size`.
        field: String,
        /// What it must hold.
        expected: &'static str,
        /// What it holds.
        found: &'static str,
    },
    /// A field's value is of the right type but not allowed.
    BadValue {
        /// The field.
        field: String,
        /// Why.
        problem: String,
    },
    /// A field the format does not have.
    UnknownField(String),
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { line, column, message } => {
                write!(f, "not a JSON profile: {message} (line {line}, column {column})")
            }
            Self::MissingField(field) => write!(f, "the profile lacks the field `{field}`"),
            Self::WrongType { field, expected, found } => {
                write!(f, "`{field}` must be {expected}, but it is {found}")
            }
            Self::BadValue { field, problem } => write!(f, "`{field}`: {problem}"),
            Self::UnknownField(field) => {
                write!(f, "the profile has a field `{field}` that the format does not")
            }
        }
    }
}

impl std::error::Error for ProfileError {}

/// The names `device_type` takes, as wgpu's `DeviceType` variants.
const DEVICE_TYPES: [(&str, wgpu::DeviceType); 5] = [
    ("DiscreteGpu", wgpu::DeviceType::DiscreteGpu),
    ("IntegratedGpu", wgpu::DeviceType::IntegratedGpu),
    ("VirtualGpu", wgpu::DeviceType::VirtualGpu),
    ("Cpu", wgpu::DeviceType::Cpu),
    ("Other", wgpu::DeviceType::Other),
];

/// The names `backend` takes, as wgpu's `Backend` variants.
const BACKENDS: [(&str, wgpu::Backend); 6] = [
    ("Vulkan", wgpu::Backend::Vulkan),
    ("Metal", wgpu::Backend::Metal),
    ("Dx12", wgpu::Backend::Dx12),
    ("Gl", wgpu::Backend::Gl),
    ("BrowserWebGpu", wgpu::Backend::BrowserWebGpu),
    ("Noop", wgpu::Backend::Noop),
];

const TOP_FIELDS: [&str; 10] = [
    "name",
    "device_type",
    "vendor_id",
    "backend",
    "driver",
    "driver_info",
    "limits",
    "features",
    "subgroup_min_size",
    "subgroup_max_size",
];

fn device_type_name(device_type: wgpu::DeviceType) -> &'static str {
    DEVICE_TYPES.iter().find(|(_, t)| *t == device_type).map_or("Other", |(name, _)| name)
}

fn backend_name(backend: wgpu::Backend) -> &'static str {
    BACKENDS.iter().find(|(_, b)| *b == backend).map_or("Noop", |(name, _)| name)
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// `profile` as the format's JSON, one field a line, ending in a newline.
pub fn to_json(profile: &DeviceProfile) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"name\": {},", quoted(&profile.name));
    let _ = writeln!(out, "  \"device_type\": {},", quoted(device_type_name(profile.device_type)));
    let _ = writeln!(out, "  \"vendor_id\": {},", profile.vendor);
    let _ = writeln!(out, "  \"backend\": {},", quoted(backend_name(profile.backend)));
    let _ = writeln!(out, "  \"driver\": {},", quoted(&profile.driver));
    let _ = writeln!(out, "  \"driver_info\": {},", quoted(&profile.driver_info));
    out.push_str("  \"limits\": {\n");
    let limits = profile.limits.values();
    for (i, (name, value)) in limits.iter().enumerate() {
        let comma = if i + 1 < limits.len() { "," } else { "" };
        let _ = writeln!(out, "    \"{name}\": {value}{comma}");
    }
    out.push_str("  },\n  \"features\": {\n");
    let features = profile.features.values();
    for (i, (name, value)) in features.iter().enumerate() {
        let comma = if i + 1 < features.len() { "," } else { "" };
        let _ = writeln!(out, "    \"{name}\": {value}{comma}");
    }
    out.push_str("  },\n");
    let _ = writeln!(out, "  \"subgroup_min_size\": {},", profile.subgroup_min_size);
    let _ = writeln!(out, "  \"subgroup_max_size\": {}", profile.subgroup_max_size);
    out.push_str("}\n");
    out
}

/// The JSON type of `value`, for messages.
const fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An object's fields, checked against the format's: none missing (the first reported),
/// none unknown.
struct Fields<'a> {
    object: &'a serde_json::Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, prefix: &'a str, names: &[&str]) -> Result<Self, ProfileError> {
        let Value::Object(object) = value else {
            let field = if prefix.is_empty() { "the profile".to_owned() } else { prefix.to_owned() };
            return Err(ProfileError::WrongType { field, expected: "an object", found: type_name(value) });
        };
        let fields = Self { object, prefix };
        for name in names {
            if !object.contains_key(*name) {
                return Err(ProfileError::MissingField(fields.path(name)));
            }
        }
        if let Some(unknown) = object.keys().find(|key| !names.contains(&key.as_str())) {
            return Err(ProfileError::UnknownField(fields.path(unknown)));
        }
        Ok(fields)
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_owned() } else { format!("{}.{name}", self.prefix) }
    }

    fn get(&self, name: &str) -> &'a Value {
        // Checked present by `of`.
        self.object.get(name).unwrap_or(&Value::Null)
    }

    fn string(&self, name: &str) -> Result<String, ProfileError> {
        match self.get(name) {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.wrong(name, "a string", other)),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, ProfileError> {
        match self.get(name) {
            Value::Bool(b) => Ok(*b),
            other => Err(self.wrong(name, "true or false", other)),
        }
    }

    fn u64(&self, name: &str) -> Result<u64, ProfileError> {
        match self.get(name) {
            Value::Number(n) => n.as_u64().ok_or_else(|| ProfileError::BadValue {
                field: self.path(name),
                problem: format!("{n} is not a whole number from 0 to {}", u64::MAX),
            }),
            other => Err(self.wrong(name, "a whole number", other)),
        }
    }

    fn u32(&self, name: &str) -> Result<u32, ProfileError> {
        let value = self.u64(name)?;
        u32::try_from(value).map_err(|_| ProfileError::BadValue {
            field: self.path(name),
            problem: format!("{value} is more than {} (a 32-bit limit)", u32::MAX),
        })
    }

    fn wrong(&self, name: &str, expected: &'static str, found: &Value) -> ProfileError {
        ProfileError::WrongType { field: self.path(name), expected, found: type_name(found) }
    }
}

/// The value `table` names `text`, for the field `field`.
fn named<T: Copy>(field: &str, text: &str, table: &[(&str, T)]) -> Result<T, ProfileError> {
    table.iter().find(|(name, _)| *name == text).map(|&(_, v)| v).ok_or_else(|| ProfileError::BadValue {
        field: field.to_owned(),
        problem: format!(
            "{text:?} is none of {}",
            table.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// Reads a profile in the format's JSON.
///
/// # Errors
///
/// [`ProfileError`]: text that is not JSON, a missing or unknown field, a field of the
/// wrong JSON type, a number out of its limit's range, an unknown device type or backend.
pub fn from_json(text: &str) -> Result<DeviceProfile, ProfileError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ProfileError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line").next().unwrap_or_default().to_owned(),
    })?;
    let top = Fields::of(&value, "", &TOP_FIELDS)?;
    let device_type = named("device_type", &top.string("device_type")?, &DEVICE_TYPES)?;
    let backend = named("backend", &top.string("backend")?, &BACKENDS)?;
    let limits = Fields::of(top.get("limits"), "limits", &ProfileLimits::NAMES)?;
    let limits = ProfileLimits {
        max_compute_workgroup_size_x: limits.u32("max_compute_workgroup_size_x")?,
        max_compute_invocations_per_workgroup: limits.u32("max_compute_invocations_per_workgroup")?,
        max_compute_workgroups_per_dimension: limits.u32("max_compute_workgroups_per_dimension")?,
        max_compute_workgroup_storage_size: limits.u32("max_compute_workgroup_storage_size")?,
        max_storage_buffer_binding_size: limits.u64("max_storage_buffer_binding_size")?,
        max_buffer_size: limits.u64("max_buffer_size")?,
        max_storage_buffers_per_shader_stage: limits.u32("max_storage_buffers_per_shader_stage")?,
        min_storage_buffer_offset_alignment: limits.u32("min_storage_buffer_offset_alignment")?,
        max_uniform_buffer_binding_size: limits.u64("max_uniform_buffer_binding_size")?,
    };
    let alignment = limits.min_storage_buffer_offset_alignment;
    if !alignment.is_power_of_two() {
        return Err(ProfileError::BadValue {
            field: "limits.min_storage_buffer_offset_alignment".to_owned(),
            problem: format!("{alignment} is not a power of two (wgpu refuses such an adapter)"),
        });
    }
    let features = Fields::of(top.get("features"), "features", &ProfileFeatures::NAMES)?;
    let features = ProfileFeatures {
        subgroups: features.boolean("subgroups")?,
        shader_f16: features.boolean("shader_f16")?,
        timestamp_query: features.boolean("timestamp_query")?,
    };
    let profile = DeviceProfile {
        name: top.string("name")?,
        device_type,
        vendor: top.u32("vendor_id")?,
        backend,
        driver: top.string("driver")?,
        driver_info: top.string("driver_info")?,
        limits,
        features,
        subgroup_min_size: top.u32("subgroup_min_size")?,
        subgroup_max_size: top.u32("subgroup_max_size")?,
    };
    if profile.subgroup_min_size > profile.subgroup_max_size {
        return Err(ProfileError::BadValue {
            field: "subgroup_min_size".to_owned(),
            problem: format!(
                "{} is more than subgroup_max_size {}",
                profile.subgroup_min_size, profile.subgroup_max_size
            ),
        });
    }
    Ok(profile)
}

/// The command line's name of a storage type.
pub const fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "f32",
    }
}

/// `explained` (planned on the device `device` names) as JSON, ending in a newline.
pub fn explanation_json(explained: &PlanExplanation, device: &str) -> String {
    let optional = |value: Option<u64>| value.map_or_else(|| "null".to_owned(), |v| v.to_string());
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"op\": {},", quoted(explained.op));
    let _ = writeln!(out, "  \"device\": {},", quoted(device));
    let _ = writeln!(out, "  \"rows\": {},", explained.shape.rows);
    let _ = writeln!(out, "  \"cols\": {},", explained.shape.cols);
    let _ = writeln!(out, "  \"inner\": {},", explained.shape.inner);
    let _ = writeln!(out, "  \"dtype\": {},", quoted(dtype_name(explained.dtype)));
    let _ = writeln!(out, "  \"strategy\": {},", quoted(&format!("{:?}", explained.strategy)));
    let _ = writeln!(out, "  \"workgroup_size\": {},", explained.workgroup_size);
    let _ = writeln!(out, "  \"rows_per_group\": {},", explained.rows_per_group);
    let _ = writeln!(out, "  \"lanes_per_row\": {},", explained.lanes_per_row);
    let _ = writeln!(out, "  \"rows_per_invocation\": {},", explained.rows_per_invocation);
    let _ = writeln!(out, "  \"walk_width\": {},", explained.walk_width);
    let _ = writeln!(out, "  \"segments_per_row\": {},", explained.segments_per_row);
    let _ = writeln!(out, "  \"packet_elements\": {},", explained.packet_elements);
    let _ = writeln!(out, "  \"cached_elements_per_lane\": {},", explained.cached_elements_per_lane);
    let _ = writeln!(out, "  \"elements_per_lane\": {},", explained.elements_per_lane);
    let _ =
        writeln!(out, "  \"reads_per_element\": {},", optional(explained.reads_per_element.map(u64::from)));
    let _ = writeln!(out, "  \"chunks\": {},", explained.chunks);
    let _ = writeln!(out, "  \"dispatches\": {},", explained.dispatches);
    out.push_str("  \"passes\": [");
    for (i, pass) in explained.passes.iter().enumerate() {
        let comma = if i + 1 < explained.passes.len() { "," } else { "" };
        let _ = write!(
            out,
            "\n    {{\"name\": {}, \"dispatches\": {}}}{comma}",
            quoted(&pass.name),
            pass.dispatches
        );
    }
    out.push_str(if explained.passes.is_empty() { "],\n" } else { "\n  ],\n" });
    match &explained.linear {
        Some(linear) => {
            let _ = writeln!(
                out,
                "  \"linear\": {{\"tile\": {}, \"window_rows\": {}, \"windows\": {}, \"workspace_bytes\": {}, \
                 \"stores_logits\": {}, \"terms_per_dispatch\": {}}},",
                linear.tile,
                linear.window_rows,
                linear.windows,
                linear.workspace_bytes,
                linear.stores_logits,
                optional(linear.terms_per_dispatch.map(|t| t as u64)),
            );
        }
        None => out.push_str("  \"linear\": null,\n"),
    }
    out.push_str("  \"notes\": [");
    for (i, note) in explained.notes.iter().enumerate() {
        let comma = if i + 1 < explained.notes.len() { "," } else { "" };
        let _ = write!(out, "\n    {}{comma}", quoted(note));
    }
    out.push_str(if explained.notes.is_empty() { "]\n" } else { "\n  ]\n" });
    out.push_str("}\n");
    out
}

/// `explained` as lines of text for a reader.
pub fn explanation_text(explained: &PlanExplanation, device: &str) -> String {
    let mut out = String::new();
    let shape = explained.shape;
    let _ = writeln!(
        out,
        "{} of {} x {} {}{} on {device}",
        explained.op,
        shape.rows,
        shape.cols,
        dtype_name(explained.dtype),
        if shape.inner > 1 {
            format!(" (the class axis {} elements apart)", shape.inner)
        } else {
            String::new()
        }
    );
    let rows: [(&str, String); 14] = [
        ("strategy", format!("{:?}", explained.strategy)),
        ("workgroup size", explained.workgroup_size.to_string()),
        ("rows per workgroup", explained.rows_per_group.to_string()),
        ("lanes per row", explained.lanes_per_row.to_string()),
        ("rows per invocation", explained.rows_per_invocation.to_string()),
        ("walk width", explained.walk_width.to_string()),
        ("segments per row", explained.segments_per_row.to_string()),
        ("packet", format!("{} elements", explained.packet_elements)),
        ("cached per lane", format!("{} elements", explained.cached_elements_per_lane)),
        ("share per lane", format!("{} elements", explained.elements_per_lane)),
        (
            "reads per element",
            explained
                .reads_per_element
                .map_or_else(|| "none (no logits stored)".to_owned(), |r| r.to_string()),
        ),
        ("chunks", explained.chunks.to_string()),
        ("dispatches", explained.dispatches.to_string()),
        ("passes", String::new()),
    ];
    for (name, value) in rows {
        if name == "passes" {
            for pass in &explained.passes {
                let _ = writeln!(out, "    {:<30} x{}", pass.name, pass.dispatches);
            }
        } else {
            let _ = writeln!(out, "  {:<20} {value}", format!("{name}:"));
        }
    }
    if let Some(linear) = &explained.linear {
        let _ = writeln!(
            out,
            "  linear: tile {0}x{0}, {1} windows of {2} rows, workspace {3} bytes, {4}{5}",
            linear.tile,
            linear.windows,
            linear.window_rows,
            linear.workspace_bytes,
            if linear.stores_logits { "logits stored" } else { "no logits stored" },
            linear
                .terms_per_dispatch
                .map_or_else(String::new, |t| format!(", {t} terms per product dispatch")),
        );
    }
    for note in &explained.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

#[cfg(test)]
mod tests;
