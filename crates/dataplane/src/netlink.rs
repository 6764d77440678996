//! Small rtnetlink helpers shared by the drivers: a connection opened inside a namespace, link
//! lookup, link up and MTU, the tunnel's one address.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo};
use rtnetlink::{Handle, LinkUnspec};

use crate::netns::NsRuntime;
use crate::{Error, Result};

/// Opens a netlink connection inside the runtime's namespace; the handle works from anywhere.
pub(crate) fn connect(ns: &NsRuntime) -> Result<Handle> {
    ns.run(async {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok::<_, std::io::Error>(handle)
    })
    .map_err(Error::from)
}

/// The index of link `name`, or `None` when it does not exist.
pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc_enodev() => Ok(None),
        Err(err) => Err(Error::netlink(format!("get link {name}"), err)),
    }
}

/// The kind of link `name` (`Some(None)`: it exists, the kernel names no kind), or `None`
/// when it does not exist.
pub(crate) async fn link_kind(handle: &Handle, name: &str) -> Result<Option<Option<String>>> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    let link = match links.try_next().await {
        Ok(Some(link)) => link,
        Ok(None) => return Ok(None),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc_enodev() => {
            return Ok(None);
        }
        Err(err) => return Err(Error::netlink(format!("get link {name}"), err)),
    };
    let kind = link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Kind(kind) => Some(kind.to_string()),
            _ => None,
        }),
        _ => None,
    });
    Ok(Some(kind))
}

const fn libc_enodev() -> i32 {
    19
}

/// Sets link `name` up, with `mtu` when given.
pub(crate) async fn set_up(handle: &Handle, name: &str, mtu: Option<u32>) -> Result<()> {
    let index = link_index(handle, name)
        .await?
        .ok_or_else(|| Error::netlink(format!("set {name} up"), "no such link"))?;
    let mut message = LinkUnspec::new_with_index(index).up();
    if let Some(mtu) = mtu {
        message = message.mtu(mtu);
    }
    handle
        .link()
        .set(message.build())
        .execute()
        .await
        .map_err(|err| Error::netlink(format!("set {name} up"), err))
}

/// Sets the transmit queue length of link `name` (packets the kernel queues for a TUN reader).
pub(crate) async fn set_txqueuelen(handle: &Handle, name: &str, packets: u32) -> Result<()> {
    let index = link_index(handle, name)
        .await?
        .ok_or_else(|| Error::netlink(format!("set {name} txqueuelen"), "no such link"))?;
    let message = LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::TxQueueLen(packets));
    handle
        .link()
        .set(message.build())
        .execute()
        .await
        .map_err(|err| Error::netlink(format!("set {name} txqueuelen"), err))
}

/// Deletes link `name` if it exists.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<()> {
    if let Some(index) = link_index(handle, name).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|err| Error::netlink(format!("delete link {name}"), err))?;
    }
    Ok(())
}

/// Makes `address` (as a /32) the only IPv4 address of link `name`, or removes every IPv4
/// address when it is `None`. Changes nothing when the link already has exactly that.
pub(crate) async fn set_only_address(
    handle: &Handle,
    name: &str,
    address: Option<Ipv4Addr>,
) -> Result<()> {
    let op = || format!("address of {name}");
    let index = link_index(handle, name)
        .await?
        .ok_or_else(|| Error::netlink(op(), "no such link"))?;
    let mut current = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(message) = stream
        .try_next()
        .await
        .map_err(|e| Error::netlink(op(), e))?
    {
        // The dump filter is applied in user space by rtnetlink; check the index again.
        if message.header.index != index || message.header.family != AddressFamily::Inet {
            continue;
        }
        let addr = message.attributes.iter().find_map(|attr| match attr {
            AddressAttribute::Local(IpAddr::V4(a)) | AddressAttribute::Address(IpAddr::V4(a)) => {
                Some(*a)
            }
            _ => None,
        });
        current.push((addr, message.header.prefix_len, message));
    }
    let mut present = false;
    for (addr, len, message) in current {
        if address.is_some() && addr == address && len == 32 {
            present = true;
            continue;
        }
        handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(|e| Error::netlink(op(), e))?;
    }
    if let (Some(addr), false) = (address, present) {
        handle
            .address()
            .add(index, IpAddr::V4(addr), 32)
            .replace()
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("add address {addr}/32 to {name}"), e))?;
    }
    Ok(())
}
