-- Bandmate in Ardour, driven headless by Ardour's Lua session tool (`ardour7-lua`) on the Dummy
-- backend. Run by tests/tests/ardour_host.rs in two steps (BANDMATE_ARDOUR_STEP):
--   create: a new session (48 kHz, 120 BPM) with a MIDI track "Bandmate" holding the Bandmate
--           VST3 and a MIDI track "Recorded" whose input is the first track's MIDI output;
--           saved and closed (the test then puts the clip into the plugin's saved
--           state, as a host does when it reopens a project).
--   record: reopen the session, arm "Recorded", record from the start for BANDMATE_ARDOUR_SECONDS seconds while
--           the transport plays, stop, save: the "Recorded" track holds the plugin's MIDI out as
--           a .mid file under interchange/<session>/midifiles/.
-- Every line the test reads starts with "bandmate:"; a failure prints "bandmate: error ...".

local dir = assert(os.getenv("BANDMATE_ARDOUR_DIR"), "BANDMATE_ARDOUR_DIR")
local name = assert(os.getenv("BANDMATE_ARDOUR_NAME"), "BANDMATE_ARDOUR_NAME")
local step = assert(os.getenv("BANDMATE_ARDOUR_STEP"), "BANDMATE_ARDOUR_STEP")

local function say(...)
	print("bandmate:", ...)
	io.stdout:flush()
end

local function wait_ms(ms)
	ARDOUR.LuaAPI.usleep(ms * 1000)
end

local function bandmate_vst3()
	for info in ARDOUR.LuaAPI.list_plugins():iter() do
		if info.type == ARDOUR.PluginType.VST3 and info.name == "Bandmate" then
			return info
		end
	end
	return nil
end

local function create()
	local midi = ARDOUR.ChanCount(ARDOUR.DataType("midi"), 1)
	local info = bandmate_vst3()
	if not info then
		say("error", "Ardour lists no VST3 called Bandmate (VST3_PATH=" .. (os.getenv("VST3_PATH") or "") .. ")")
		return
	end
	local order = ARDOUR.PresentationInfo.max_order
	local normal = ARDOUR.TrackMode.Normal
	local player = Session:new_midi_track(midi, midi, false, ARDOUR.PluginInfo(), nil, nil, 1, "Bandmate", order, normal, true, false):front()
	local recorder = Session:new_midi_track(midi, midi, false, ARDOUR.PluginInfo(), nil, nil, 1, "Recorded", order, normal, true, false):front()
	local plugin = ARDOUR.LuaAPI.new_plugin(Session, info.unique_id, ARDOUR.PluginType.VST3, "")
	if plugin:isnil() then
		say("error", "Ardour could not instantiate the Bandmate VST3")
		return
	end
	player:add_processor_by_index(plugin, 0, nil, true)
	say("player outputs", player:output():n_ports():n_midi(), "midi", player:output():n_ports():n_audio(), "audio")

	-- The recorder hears the player's MIDI output and nothing else.
	local source = nil
	if player:output():n_ports():n_midi() > 0 then
		source = player:output():midi(0):name()
	end
	if not source then
		say("error", "the Bandmate track has no MIDI output port")
		return
	end
	recorder:input():disconnect_all(nil)
	recorder:input():connect(recorder:input():nth(0), source, nil)
	Session:save_state("", false, false, false, false, false)
	say("created", source)
end

local function record()
	local seconds = tonumber(os.getenv("BANDMATE_ARDOUR_SECONDS") or "17")
	local rate = Session:nominal_sample_rate()
	-- A session reopens with no track armed: arm the recorder.
	local recorder = Session:route_by_name("Recorded"):to_track()
	recorder:rec_enable_control():set_value(1, PBD.GroupControlDisposition.NoGroup)
	Session:request_locate(0, false, ARDOUR.LocateTransportDisposition.MustStop, ARDOUR.TransportRequestSource.TRS_UI)
	wait_ms(500)
	Session:maybe_enable_record(false)
	Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)
	local deadline = seconds * 3 * 1000
	local waited = 0
	while Session:transport_sample() < seconds * rate and waited < deadline do
		wait_ms(50)
		waited = waited + 50
	end
	say("recorded until sample", Session:transport_sample(), "recording", tostring(Session:actively_recording()))
	Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)
	wait_ms(1000)
	Session:save_state("", false, false, false, false, false)
	say("saved")
end

AudioEngine:set_backend("None (Dummy)", "", "")
local ok, err
if step == "create" then
	create_session(dir, name, 48000)
	ok, err = pcall(create)
else
	load_session(dir, name)
	ok, err = pcall(record)
end
if not ok then
	say("error", tostring(err))
end
close_session()
