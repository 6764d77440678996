//! IPAM usage per range, read from the live IPAM at scrape:
//! `isthmus_ipam_allocated_addresses{range,cidr}` and `isthmus_ipam_available_addresses{range,
//! cidr}`, where `range` is `external` (endpoint addresses in the ExternalCIDR) or `pool`
//! (address space of the networks taken out of one pool: remapped peer ranges, local ones);
//! and `isthmus_ipam_peers`, `isthmus_ipam_endpoint_mappings`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Usage of one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeUsage {
    /// `external` or `pool`.
    pub range: &'static str,
    pub cidr: String,
    pub allocated: u64,
    pub available: u64,
}

/// What the IPAM holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamFigures {
    pub ranges: Vec<RangeUsage>,
    pub peers: u64,
    pub endpoint_mappings: u64,
}

/// The live IPAM, read at each scrape (`None` when it cannot be read, e.g. not loaded yet).
pub trait UsageSource: Send + Sync + std::fmt::Debug + 'static {
    fn figures(&self) -> Option<IpamFigures>;
}

/// The collector over a [`UsageSource`].
#[derive(Debug, Clone)]
pub struct IpamUsage {
    source: Arc<dyn UsageSource>,
}

impl IpamUsage {
    pub fn new(source: Arc<dyn UsageSource>) -> Self {
        IpamUsage { source }
    }

    /// Registers the collector.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

fn gauge(v: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Collector for IpamUsage {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(figures) = self.source.figures() else {
            return Ok(());
        };
        for (name, help, pick) in [
            (
                "isthmus_ipam_allocated_addresses",
                "Addresses in use in the range",
                (|r: &RangeUsage| r.allocated) as fn(&RangeUsage) -> u64,
            ),
            (
                "isthmus_ipam_available_addresses",
                "Addresses still free in the range",
                |r: &RangeUsage| r.available,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for range in &figures.ranges {
                let labels = [("range", range.range), ("cidr", range.cidr.as_str())];
                gauge(pick(range)).encode(family.encode_family(&labels)?)?;
            }
        }
        let peers = encoder.encode_descriptor(
            "isthmus_ipam_peers",
            "Peers whose networks the IPAM holds",
            None,
            MetricType::Gauge,
        )?;
        gauge(figures.peers).encode(peers)?;
        let mappings = encoder.encode_descriptor(
            "isthmus_ipam_endpoint_mappings",
            "Endpoint reflections (MapEndpointIP answers) held",
            None,
            MetricType::Gauge,
        )?;
        gauge(figures.endpoint_mappings).encode(mappings)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Option<IpamFigures>);

    impl UsageSource for Fixed {
        fn figures(&self) -> Option<IpamFigures> {
            self.0.clone()
        }
    }

    #[test]
    fn ranges_are_read_at_scrape() {
        let figures = IpamFigures {
            ranges: vec![RangeUsage {
                range: "external",
                cidr: "10.70.0.0/16".into(),
                allocated: 12,
                available: 65_522,
            }],
            peers: 2,
            endpoint_mappings: 11,
        };
        let mut registry = Registry::default();
        IpamUsage::new(Arc::new(Fixed(Some(figures)))).register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "isthmus_ipam_allocated_addresses{range=\"external\",cidr=\"10.70.0.0/16\"} 12"
            ),
            "{text}"
        );
        assert!(text.contains(
            "isthmus_ipam_available_addresses{range=\"external\",cidr=\"10.70.0.0/16\"} 65522"
        ));
        assert!(text.contains("isthmus_ipam_peers 2"));
        assert!(text.contains("isthmus_ipam_endpoint_mappings 11"));
    }

    #[test]
    fn an_unreadable_ipam_yields_no_series() {
        let mut registry = Registry::default();
        IpamUsage::new(Arc::new(Fixed(None))).register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("isthmus_ipam"), "{text}");
    }
}
