package main

import (
	"log/slog"

	"github.com/mesolite/mesolite/internal/cliflags"
)

// Mesos's master and agent flags that have no counterpart here (modules,
// the replicated log, perf, XFS, CNI, ...). A Mesos configuration that sets
// them still starts, and each one given is named in a warning: accepted,
// never silently ignored. Flags of these lists that mesolite has are its
// own (cliflags.Inert skips them).
var mesosMasterOnlyFlags = []string{
	"agent_removal_rate_limit", "slave_removal_rate_limit", "allocator", "min_allocatable_resources",
	"authenticators", "authentication_v0_timeout", "authorizers", "fair_sharing_excluded_resource_names",
	"filter_gpu_resources", "framework_sorter", "role_sorter", "http_framework_authenticators",
	"log_auto_initialize", "master_contender", "max_unreachable_tasks_per_framework",
	"offer_constraints_re2_max_mem", "offer_constraints_re2_max_program_size", "publish_per_framework_metrics",
	"rate_limits", "recovery_agent_removal_limit", "recovery_slave_removal_limit", "registry_fetch_timeout",
	"registry_gc_interval", "registry_max_agent_age", "registry_max_agent_count", "registry_store_timeout",
	"registry_strict", "require_agent_domain", "root_submissions", "user_sorter", "webui_dir", "whitelist",
	"max_operator_event_stream_subscribers", "offer_timeout", "agent_removal_rate_limit",
}

var mesosAgentOnlyFlags = []string{
	"authenticatee", "authentication_backoff_factor", "authentication_timeout_min", "authentication_timeout_max",
	"authorizer", "cgroups_cpu_enable_pids_and_tids_count", "cgroups_destroy_timeout", "cgroups_enable_cfs",
	"cgroups_hierarchy", "cgroups_limit_swap", "cgroups_net_cls_primary_handle", "cgroups_net_cls_secondary_handles",
	"cgroups_root", "container_disk_watch_interval", "container_logger", "default_container_dns",
	"default_container_info", "disallow_sharing_agent_ipc_namespace", "disallow_sharing_agent_pid_namespace",
	"disk_profile_adaptor", "docker", "docker_ignore_runtime", "docker_kill_orphans", "docker_mesos_image",
	"docker_registry", "docker_remove_delay", "docker_store_dir", "docker_volume_checkpoint_dir",
	"docker_volume_chown", "domain_socket_location", "enforce_container_disk_quota", "enforce_container_ports",
	"executor_reregistration_retry_interval", "executor_reregistration_timeout", "frameworks_home",
	"gc_non_executor_container_sandboxes", "host_path_volume_force_creation", "http_command_executor",
	"http_executor_domain_sockets", "image_gc_config", "image_provider", "image_providers",
	"image_provisioner_backend", "ip_discovery_command", "launcher", "launcher_dir", "network_cni_config_dir",
	"network_cni_metrics", "network_cni_plugins_dir", "network_cni_root_dir_persist",
	"oversubscribed_resources_interval", "perf_duration", "perf_events", "perf_interval", "qos_controller",
	"qos_correction_interval_min", "reconfiguration_policy", "recover", "resource_estimator",
	"resource_provider_config_dir", "revocable_cpu_low_priority", "runtime_dir", "sandbox_directory",
	"secret_resolver", "strict", "systemd_enable_support", "systemd_runtime_directory", "volume_gid_range",
	"xfs_kill_containers", "xfs_project_range", "cgroups_enable_cfs", "nvidia_gpu_devices",
	"effective_capabilities", "bounding_capabilities", "allowed_capabilities", "ephemeral_ports_per_container",
	"eth0_name", "lo_name", "egress_rate_limit_per_container", "network_enable_socket_statistics_summary",
	"inventory_plugin",
}

// mesosCommonFlags are both's.
var mesosCommonFlags = []string{
	"domain", "modules", "modules_dir", "hooks", "firewall_rules", "http_authenticators", "logbufsecs",
	"quiet", "initialize_driver_logging", "external_log_file", "memory_profiling", "authentication_timeout",
	"zk_session_timeout", "hostname_lookup", "advertise_port",
}

// versionAsked says whether args ask for --version, which Mesos's daemons
// answer by printing it.
func versionAsked(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--version" || a == "-version" {
			return true
		}
	}
	return false
}

// warnInertFlags names the Mesos flags given that have no effect here.
func warnInertFlags(log *slog.Logger, fs *cliflags.FlagSet) {
	if given := fs.InertSet(); len(given) > 0 {
		log.Warn("Mesos flags that have no effect here are ignored", "flags", given)
	}
}
