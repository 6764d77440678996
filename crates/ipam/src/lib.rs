//! isthmus-ipam (being written).
