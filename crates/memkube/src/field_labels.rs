//! Which fields a field selector may name on each built-in type, as the API server's field
//! label conversions allow them (pure). Types without their own set accept `metadata.name` and
//! `metadata.namespace` only; anything else is a 400 with the API server's message. Custom
//! resources are checked by the selector parser itself (`metadata.name`, `metadata.namespace`).

use crate::resource::ResourceType;

const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];

const NODE: &[&str] = &["metadata.name", "spec.unschedulable"];

const CORE_EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

const EVENTS_V1_EVENT: &[&str] = &[
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

const NAMESPACE: &[&str] = &["status.phase", "metadata.name"];

const SECRET: &[&str] = &["type", "metadata.namespace", "metadata.name"];

const SERVICE: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "spec.clusterIP",
    "spec.type",
];

/// The field set of a built-in type that has its own, if any.
fn own_fields(ty: &ResourceType) -> Option<&'static [&'static str]> {
    match (ty.group.as_str(), ty.plural.as_str()) {
        ("", "pods") => Some(POD),
        ("", "nodes") => Some(NODE),
        ("", "events") => Some(CORE_EVENT),
        ("events.k8s.io", "events") => Some(EVENTS_V1_EVENT),
        ("", "namespaces") => Some(NAMESPACE),
        ("", "secrets") => Some(SECRET),
        ("", "services") => Some(SERVICE),
        _ => None,
    }
}

/// The field each requirement of a selector names (`f=v`, `f==v`, `f!=v`).
fn fields(selector: &str) -> impl Iterator<Item = &str> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let end = part.find(['!', '=']).unwrap_or(part.len());
            part[..end].trim()
        })
}

/// Checks a field selector against a built-in type's fields; the error is the API server's
/// message (a 400). Custom resources pass (their parser checks them).
pub fn check(ty: &ResourceType, selector: &str) -> Result<(), String> {
    if ty.custom {
        return Ok(());
    }
    for field in fields(selector) {
        match own_fields(ty) {
            Some(allowed) if allowed.contains(&field) => {}
            Some(_) => return Err(format!("field label not supported: {field}")),
            None if matches!(field, "metadata.name" | "metadata.namespace") => {}
            None => {
                return Err(format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(group: &str, plural: &str) -> ResourceType {
        crate::builtin::builtin_types()
            .into_iter()
            .find(|t| t.group == group && t.plural == plural)
            .expect("a built-in type")
    }

    #[test]
    fn default_types_accept_name_and_namespace_only() {
        let cms = builtin("", "configmaps");
        assert!(check(&cms, "metadata.name=a,metadata.namespace!=b").is_ok());
        assert_eq!(
            check(&cms, "data.k=v").unwrap_err(),
            "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }

    #[test]
    fn types_with_their_own_fields_accept_those() {
        assert!(
            check(
                &builtin("", "pods"),
                "spec.nodeName=n1,status.phase!=Running"
            )
            .is_ok()
        );
        assert!(check(&builtin("", "events"), "involvedObject.name==w").is_ok());
        assert!(check(&builtin("events.k8s.io", "events"), "regarding.name=w").is_ok());
        assert_eq!(
            check(&builtin("events.k8s.io", "events"), "involvedObject.name=w").unwrap_err(),
            "field label not supported: involvedObject.name"
        );
        assert_eq!(
            check(&builtin("", "nodes"), "metadata.namespace=x").unwrap_err(),
            "field label not supported: metadata.namespace"
        );
    }
}
