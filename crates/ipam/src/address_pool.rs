//! [`AddressPool`]: the free addresses of one range (the ExternalCIDR), as an interval map.
//! Allocation is next-fit from a cursor (so a freed address is not handed out again at once,
//! leaving stale conntrack entries time to expire) and costs O(log n); so does freeing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Free addresses of `[first, last]`, as disjoint inclusive intervals keyed by start.
#[derive(Debug, Clone)]
pub struct AddressPool {
    first: u32,
    last: u32,
    free: BTreeMap<u32, u32>,
    free_count: u64,
    cursor: u32,
}

impl AddressPool {
    /// A pool where every address of `[first, last]` is free. `first <= last` is required.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        let (first, last) = (u32::from(first), u32::from(last));
        let mut free = BTreeMap::new();
        let mut free_count = 0;
        if first <= last {
            free.insert(first, last);
            free_count = u64::from(last - first) + 1;
        }
        AddressPool {
            first,
            last,
            free,
            free_count,
            cursor: first,
        }
    }

    /// Whether `ip` is inside the pool's range (free or not).
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    /// How many addresses are free.
    pub fn free_count(&self) -> u64 {
        self.free_count
    }

    /// How many addresses the range holds.
    pub fn capacity(&self) -> u64 {
        if self.first <= self.last {
            u64::from(self.last - self.first) + 1
        } else {
            0
        }
    }

    /// The interval containing `at`, or else the first one after it, or else the first one.
    fn interval_from(&self, at: u32) -> Option<(u32, u32)> {
        if let Some((&s, &e)) = self.free.range(..=at).next_back()
            && e >= at
        {
            return Some((s, e));
        }
        let next = self
            .free
            .range(at..)
            .next()
            .or_else(|| self.free.iter().next());
        next.map(|(&s, &e)| (s, e))
    }

    /// The address [`AddressPool::allocate`] would take next, without taking it.
    pub fn peek(&self) -> Option<Ipv4Addr> {
        let (s, e) = self.interval_from(self.cursor)?;
        let ip = if (s..=e).contains(&self.cursor) {
            self.cursor
        } else {
            s
        };
        Some(Ipv4Addr::from(ip))
    }

    /// Takes the next free address at or after the cursor (wrapping around), if any.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let ip = self.peek()?;
        self.allocate_specific(ip).then_some(ip)
    }

    /// Takes a specific address and moves the cursor past it. Returns false if it was not free.
    /// `peek` followed by `allocate_specific` is exactly `allocate`: that is how a logged
    /// decision replays to the same state.
    pub fn allocate_specific(&mut self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        match self.free.range(..=ip).next_back() {
            Some((&s, &e)) if e >= ip => {
                self.take(s, e, ip);
                self.cursor = if ip == self.last { self.first } else { ip + 1 };
                true
            }
            _ => false,
        }
    }

    fn take(&mut self, s: u32, e: u32, ip: u32) {
        self.free.remove(&s);
        if s < ip {
            self.free.insert(s, ip - 1);
        }
        if ip < e {
            self.free.insert(ip + 1, e);
        }
        self.free_count -= 1;
    }

    /// Returns an address to the pool. Returns false if it was out of range or already free.
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        if !(self.first..=self.last).contains(&ip) || self.is_free_u32(ip) {
            return false;
        }
        let (mut start, mut end) = (ip, ip);
        if ip > 0
            && let Some((&s, &e)) = self.free.range(..ip).next_back()
            && e == ip - 1
        {
            self.free.remove(&s);
            start = s;
        }
        if let Some(next) = ip.checked_add(1)
            && let Some(e) = self.free.remove(&next)
        {
            end = e;
        }
        self.free.insert(start, end);
        self.free_count += 1;
        true
    }

    /// Whether `ip` is currently free.
    pub fn is_free(&self, ip: Ipv4Addr) -> bool {
        self.is_free_u32(u32::from(ip))
    }

    fn is_free_u32(&self, ip: u32) -> bool {
        matches!(self.free.range(..=ip).next_back(), Some((_, &e)) if e >= ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn next_fit_allocation_and_release() {
        let mut p = AddressPool::new(ip("10.0.0.2"), ip("10.0.0.5"));
        assert_eq!(p.capacity(), 4);
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        assert_eq!((a, b), (ip("10.0.0.2"), ip("10.0.0.3")));
        assert!(p.release(a));
        assert!(!p.release(a), "double free refused");
        // next-fit: the freed address is not reused before the rest of the range.
        assert_eq!(p.allocate(), Some(ip("10.0.0.4")));
        assert_eq!(p.allocate(), Some(ip("10.0.0.5")));
        assert_eq!(p.allocate(), Some(ip("10.0.0.2")));
        assert_eq!(p.allocate(), None);
        assert_eq!(p.free_count(), 0);
    }

    #[test]
    fn release_merges_neighbours() {
        let mut p = AddressPool::new(ip("0.0.0.0"), ip("0.0.0.9"));
        let all: Vec<_> = std::iter::from_fn(|| p.allocate()).collect();
        assert_eq!(all.len(), 10);
        for a in [&all[3], &all[5], &all[4]] {
            assert!(p.release(*a));
        }
        assert_eq!(p.free.len(), 1);
        assert!(p.allocate_specific(ip("0.0.0.4")));
        assert!(!p.allocate_specific(ip("0.0.0.4")));
        assert_eq!(p.free_count(), 2);
    }

    #[test]
    fn edges_of_the_address_space() {
        let mut p = AddressPool::new(ip("255.255.255.254"), ip("255.255.255.255"));
        assert_eq!(p.allocate(), Some(ip("255.255.255.254")));
        assert_eq!(p.allocate(), Some(ip("255.255.255.255")));
        assert!(p.release(ip("255.255.255.255")));
        assert!(!p.release(ip("255.255.255.253")), "out of range");
    }
}
