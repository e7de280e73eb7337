// Drives @openai/codex-sdk (unchanged) against trio-codex, as a user would:
// a thread, a second turn on it, resumeThread, runStreamed and an output
// schema. Prints one JSON object with what it saw; the pytest side checks it.
// argv: <path of the SDK's dist/index.js> <trio-codex binary> <working dir>
import { pathToFileURL } from "node:url";

const [sdkPath, bin, workdir] = process.argv.slice(2);
const { Codex } = await import(pathToFileURL(sdkPath).href);

const codex = new Codex({ codexPathOverride: bin });
// Unsandboxed: the streamed turn runs a command, and the test must not need bubblewrap.
const options = { workingDirectory: workdir, skipGitRepoCheck: true, sandboxMode: "danger-full-access" };
const seen = {};

const thread = codex.startThread(options);
const first = await thread.run("[[deltas=2]] first turn");
seen.first = { id: thread.id, finalResponse: first.finalResponse, usage: first.usage,
               items: first.items.map((item) => item.type) };
const second = await thread.run("second turn");
seen.second = { id: thread.id, finalResponse: second.finalResponse };

const resumed = codex.resumeThread(thread.id, options);
const third = await resumed.run("third turn, resumed");
seen.resumed = { id: resumed.id, finalResponse: third.finalResponse };

const { events } = await resumed.runStreamed('[[call=shell_command {"command":"echo streamed"}]]');
seen.streamed = [];
for await (const event of events) {
  seen.streamed.push(event.item ? `${event.type}:${event.item.type}` : event.type);
  if (event.type === "item.completed" && event.item.type === "command_execution") {
    seen.command = event.item;
  }
}

const schema = { type: "object", properties: { answer: { type: "string" } }, required: ["answer"],
                 additionalProperties: false };
const structured = await thread.run('[[text="{\\"answer\\":\\"42\\"}"]] structured', { outputSchema: schema });
seen.structured = JSON.parse(structured.finalResponse);

try {
  await thread.run('[[status=400 message="no such model"]] failing');
  seen.failure = null;
} catch (error) {
  seen.failure = String(error.message);
}
console.log(JSON.stringify(seen));
