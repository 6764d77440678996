//! isthmus-ipam-store (being written).
