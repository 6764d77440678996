//! One line from an error and its sources, for messages people read. Client errors repeat
//! their source in their own text (`client error (Connect): client error (Connect): …`); a
//! message already contained in the one before it is dropped.

use std::error::Error;

/// `outer: inner: root`, each distinct message once.
pub fn describe(error: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = next {
        let message = e.to_string();
        let repeated = parts.last().is_some_and(|prev| prev.contains(&message));
        if !repeated && !message.is_empty() {
            parts.push(message);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn repeated_messages_appear_once() {
        let root = E("Connection refused (os error 111)", None);
        let tcp = E(
            "tcp connect error: Connection refused (os error 111)",
            Some(Box::new(root)),
        );
        let client = E("client error (Connect)", Some(Box::new(tcp)));
        let outer = E(
            "ServiceError: client error (Connect)",
            Some(Box::new(client)),
        );
        assert_eq!(
            describe(&outer),
            "ServiceError: client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
    }
}
