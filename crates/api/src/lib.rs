//! isthmus-api (being written).
