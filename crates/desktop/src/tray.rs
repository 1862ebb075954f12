//! The tray icon: green while a tunnel is up, grey otherwise; its menu opens the window,
//! connects or disconnects each location, and quits. On Linux it is a StatusNotifierItem
//! (D-Bus); where no tray host runs, the app goes on without one and closing quits.

use crate::backend::InstanceView;
use crate::Outside;
use tray_icon::menu::{Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem};
use tray_icon::{TrayIcon, TrayIconBuilder, TrayIconEvent};

pub struct Tray {
    icon: TrayIcon,
    actions: Vec<(MenuId, Outside)>,
    shown: Option<(Vec<(String, Outside)>, bool)>,
}

impl Tray {
    /// `notify` is called on the tray's own thread with each request.
    pub fn new(notify: impl Fn(Outside) + Send + Sync + Clone + 'static) -> Result<Tray, String> {
        let icon = TrayIconBuilder::new()
            .with_tooltip("Onramp")
            .with_icon(icon(false)?)
            .with_menu_on_left_click(false)
            .build()
            .map_err(|e| e.to_string())?;
        let n = notify.clone();
        TrayIconEvent::set_event_handler(Some(move |e: TrayIconEvent| {
            if matches!(e, TrayIconEvent::Click { .. } | TrayIconEvent::DoubleClick { .. }) {
                n(Outside::Show);
            }
        }));
        let mut tray = Tray { icon, actions: vec![], shown: None };
        tray.update(&[], false);
        Ok(tray)
    }

    /// Wires menu clicks to `notify`; the ids are looked up in [`Tray::action`].
    pub fn route(notify: impl Fn(MenuId) + Send + Sync + 'static) {
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| notify(e.id)));
    }

    pub fn action(&self, id: &MenuId) -> Option<Outside> {
        self.actions.iter().find(|(i, _)| i == id).map(|(_, o)| o.clone())
    }

    /// Rebuilds the menu and icon when the locations or their state changed.
    pub fn update(&mut self, instances: &[InstanceView], can_connect: bool) {
        let mut items: Vec<(String, Outside)> = vec![];
        let several = instances.len() > 1;
        for i in instances {
            for l in &i.locations {
                let name = if several { format!("{} ({})", l.name, i.name) } else { l.name.clone() };
                let (instance_id, network_id) = (i.id.clone(), l.network_id);
                items.push(match l.tunnel {
                    Some(_) => (format!("Disconnect {name}"), Outside::Disconnect { instance_id, network_id }),
                    None => (format!("Connect {name}"), Outside::Connect { instance_id, network_id }),
                });
            }
        }
        let connected = items.iter().any(|(_, o)| matches!(o, Outside::Disconnect { .. }));
        let now = (items, can_connect);
        if self.shown.as_ref() == Some(&now) {
            return;
        }
        let menu = Menu::new();
        let mut actions = vec![];
        let open = MenuItem::new("Open Onramp", true, None);
        actions.push((open.id().clone(), Outside::Show));
        let _ = menu.append(&open);
        let _ = menu.append(&PredefinedMenuItem::separator());
        for (label, o) in &now.0 {
            let enabled = now.1 || matches!(o, Outside::Disconnect { .. });
            let item = MenuItem::new(label, enabled, None);
            actions.push((item.id().clone(), o.clone()));
            let _ = menu.append(&item);
        }
        let _ = menu.append(&PredefinedMenuItem::separator());
        let quit = MenuItem::new("Quit Onramp", true, None);
        actions.push((quit.id().clone(), Outside::Quit));
        let _ = menu.append(&quit);
        self.icon.set_menu(Some(Box::new(menu)));
        if let Ok(i) = icon(connected) {
            let _ = self.icon.set_icon(Some(i));
        }
        let _ = self.icon.set_tooltip(Some(if connected { "Onramp: connected" } else { "Onramp: not connected" }));
        self.actions = actions;
        self.shown = Some(now);
    }
}

fn icon(connected: bool) -> Result<tray_icon::Icon, String> {
    tray_icon::Icon::from_rgba(crate::icon::rgba(32, connected), 32, 32).map_err(|e| e.to_string())
}
